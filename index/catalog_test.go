package index

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format"
)

// fullInfo returns a FileInfo with every field set, by reflection, to a
// value of its own (so that a field the encoding forgets fails the round
// trip), with a given ID.
func fullInfo(t *testing.T, id uint32) FileInfo {
	t.Helper()
	var f FileInfo
	v := reflect.ValueOf(&f).Elem()
	for i := range v.NumField() {
		fv := v.Field(i)
		n := int64(i + 3)
		switch fv.Kind() {
		case reflect.String:
			fv.SetString("/captures/f" + string(rune('a'+i)) + ".pcap")
		case reflect.Int, reflect.Int64:
			fv.SetInt(-n * 1000003)
		case reflect.Uint8, reflect.Uint32, reflect.Uint64:
			fv.SetUint(uint64(n))
		case reflect.Slice:
			switch fv.Interface().(type) {
			case []uint32:
				fv.Set(reflect.ValueOf([]uint32{1, 276, 1 << 31}))
			case []format.Section:
				fv.Set(reflect.ValueOf([]format.Section{
					{Offset: 0, Ifaces: []format.Interface{{LinkType: 1, SnapLen: 65535, TSResol: 6}}},
					{Offset: 4096, BigEndian: true, Ifaces: []format.Interface{{LinkType: 113, SnapLen: 262144, TSResol: 0x89, TSOffset: -7}, {LinkType: 101}}},
					{Offset: 8192},
				}))
			default:
				t.Fatalf("FileInfo.%s: a slice this test does not fill", v.Type().Field(i).Name)
			}
		case reflect.Struct:
			if _, ok := fv.Interface().(time.Time); !ok {
				t.Fatalf("FileInfo.%s: a struct this test does not fill", v.Type().Field(i).Name)
			}
			fv.Set(reflect.ValueOf(time.Unix(1700000000+n, n*1001).UTC()))
		default:
			t.Fatalf("FileInfo.%s: a kind this test does not fill", v.Type().Field(i).Name)
		}
	}
	f.ID = id
	return f
}

// TestCatalogEntryRoundTrip: every field of a catalog entry comes back,
// zero values too.
func TestCatalogEntryRoundTrip(t *testing.T) {
	for _, want := range []FileInfo{fullInfo(t, 77), {ID: 5}} {
		got, err := decodeFileInfo(want.ID, appendFileInfo(nil, &want))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
}

// TestCatalogEntryCut: every cut of an entry, and extra bytes, fail to
// decode, with an error.
func TestCatalogEntryCut(t *testing.T) {
	f := fullInfo(t, 1)
	v := appendFileInfo(nil, &f)
	for n := range len(v) {
		if _, err := decodeFileInfo(1, v[:n]); err == nil {
			t.Fatalf("cut at %d of %d bytes: decoded", n, len(v))
		}
	}
	if _, err := decodeFileInfo(1, append(v, 0)); err == nil {
		t.Error("a byte too many: decoded")
	}
}

// FuzzDecodeFileInfo: hostile catalog values never panic, and what decodes
// encodes back to the same value.
func FuzzDecodeFileInfo(f *testing.F) {
	full := fullInfo(&testing.T{}, 1)
	f.Add(appendFileInfo(nil, &full))
	f.Add(appendFileInfo(nil, &FileInfo{}))
	js, _ := json.Marshal(full)
	f.Add(js)
	f.Fuzz(func(t *testing.T, v []byte) {
		info, err := decodeFileInfo(1, v)
		if err != nil {
			return
		}
		again, err := decodeFileInfo(1, appendFileInfo(nil, &info))
		if err != nil || !reflect.DeepEqual(again, info) {
			t.Fatalf("re-encoded entry: %+v %v, first %+v", again, err, info)
		}
	})
}
