package index

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

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

// TestCatalogEntryVersion1: an entry written before CTime was added
// (version 1: the same fields without the last) decodes with CTime zero,
// which the unchanged check takes as unknown.
func TestCatalogEntryVersion1(t *testing.T) {
	want := fullInfo(t, 9)
	want.CTime = time.Time{}
	want.Container, want.DataSize = "", 0
	v := appendFileInfo(nil, &want)
	if !bytes.HasSuffix(v, []byte{0, 0, 0}) {
		t.Fatal("a zero time, an empty string and a zero are not encoded as one 0 byte each")
	}
	v = v[:len(v)-3]
	v[0] = 1
	got, err := decodeFileInfo(want.ID, v)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("version 1 entry:\n got %+v\nwant %+v", got, want)
	}
}

// TestCatalogEntryVersion2: an entry written before compressed captures
// (version 2: no Container, no DataSize) decodes as a plain capture's.
func TestCatalogEntryVersion2(t *testing.T) {
	want := fullInfo(t, 9)
	want.Container, want.DataSize = "", 0
	v := appendFileInfo(nil, &want)
	v = v[:len(v)-2]
	v[0] = 2
	got, err := decodeFileInfo(want.ID, v)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("version 2 entry:\n got %+v\nwant %+v", got, want)
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
	newer := append([]byte{catalogVersion + 1}, v[1:]...)
	if _, err := decodeFileInfo(1, newer); err == nil || !strings.Contains(err.Error(), "newer xffidx") {
		t.Errorf("an entry of a later version: %v", err)
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

// pcapEntry is the catalog entry of a small pcap capture, valid as
// readers check (FileInfo.validate), for tests that need one.
func pcapEntry(id uint32, path string) FileInfo {
	return FileInfo{ID: id, Path: path, Format: "pcap", Size: 1 << 20,
		Sections: []format.Section{{Ifaces: []format.Interface{{LinkType: 1, SnapLen: 65535, TSResol: 6}}}}}
}

// TestConvertLegacyEntries: Store.Upgrade's conversion rewrites a JSON
// catalog entry of schema 3 in the binary encoding with every field, and
// leaves binary entries and values that are neither as they are.
func TestConvertLegacyEntries(t *testing.T) {
	s := &Store{Dir: t.TempDir(), LockWait: time.Second}
	want := fullInfo(t, 7)
	binary := pcapEntry(8, "/c/b.pcap")
	if err := s.Update(binary); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	err = s.withDB(false, func(db *pebble.DB) error {
		b := db.NewBatch()
		b.Set(fileKey(7), js, nil)
		b.Set(fileKey(9), []byte("{garbage"), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return err
		}
		if n, err := convertLegacyEntries(db); n != 1 || err != nil {
			t.Errorf("converted %d entries (%v), want 1", n, err)
		}
		for fid, want := range map[uint32]FileInfo{7: want, 8: binary} {
			v, closer, err := db.Get(fileKey(fid))
			if err != nil {
				return err
			}
			got, err := decodeFileInfo(fid, v)
			closer.Close()
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("entry %d: %v\n got %+v\nwant %+v", fid, err, got, want)
			}
		}
		v, closer, err := db.Get(fileKey(9))
		if err != nil {
			return err
		}
		defer closer.Close()
		if string(v) != "{garbage" {
			t.Errorf("a value that is no entry became %q", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestValidate: entries a reader would index or seek out of bounds with
// are invalid, saying why; what the build writes is valid.
func TestValidate(t *testing.T) {
	pcap := func() FileInfo {
		return FileInfo{ID: 1, Path: "/c/a.pcap", Format: "pcap", Size: 1000, ResumeAt: 1000, FingerprintFrom: 24, FingerprintLen: 976,
			Sections: []format.Section{{Ifaces: []format.Interface{{LinkType: 1, SnapLen: 65535, TSResol: 6}}}}}
	}
	pcapng := func() FileInfo {
		return FileInfo{ID: 2, Path: "/c/b.pcapng", Format: "pcapng", Size: 5000, ResumeAt: 4000, FingerprintFrom: 100, FingerprintLen: 4900,
			Sections: []format.Section{{Ifaces: []format.Interface{{LinkType: 1}, {LinkType: 113}}}, {Offset: 3000}}}
	}
	for _, f := range []FileInfo{pcap(), pcapng()} {
		if err := f.validate(); err != nil {
			t.Errorf("%s: %v", f.Path, err)
		}
	}
	for _, tc := range []struct {
		name  string
		base  func() FileInfo
		craft func(*FileInfo)
		want  string
	}{
		{"pcap section without interface", pcap, func(f *FileInfo) { f.Sections[0].Ifaces = nil }, "lists 0 interfaces"},
		{"pcap with two interfaces", pcap, func(f *FileInfo) { f.Sections[0].Ifaces = append(f.Sections[0].Ifaces, f.Sections[0].Ifaces[0]) }, "lists 2 interfaces"},
		{"pcap with two sections", pcap, func(f *FileInfo) { f.Sections = append(f.Sections, format.Section{Offset: 500}) }, "one section"},
		{"no section", pcapng, func(f *FileInfo) { f.Sections = nil }, "no section"},
		{"section past the end", pcapng, func(f *FileInfo) { f.Sections[1].Offset = 5000 }, "outside the file"},
		{"negative section", pcapng, func(f *FileInfo) { f.Sections[0].Offset = -8 }, "outside the file"},
		{"sections out of order", pcapng, func(f *FileInfo) { f.Sections[1].Offset = 0 }, "does not follow"},
		{"unknown format", pcap, func(f *FileInfo) { f.Format = "erf\x1b[2J" }, `format "erf\x1b[2J"`},
		{"relative path", pcap, func(f *FileInfo) { f.Path = "a.pcap" }, "not an absolute path"},
		{"negative size", pcap, func(f *FileInfo) { f.Size = -1 }, "size -1"},
		{"resume past the end", pcap, func(f *FileInfo) { f.ResumeAt = 1001 }, "resume offset"},
		{"fingerprint too long", pcap, func(f *FileInfo) { f.FingerprintLen = 1 << 40 }, "fingerprint"},
	} {
		f := tc.base()
		tc.craft(&f)
		if err := f.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestCatalogWithInvalidEntries: the whole catalog comes back but its
// invalid entries, which an InvalidEntries error names (the path quoted:
// it comes from the index).
func TestCatalogWithInvalidEntries(t *testing.T) {
	s := &Store{Dir: t.TempDir(), LockWait: time.Second}
	good := FileInfo{ID: 1, Path: "/c/good.pcap", Format: "pcap", Size: 100, Sections: []format.Section{{Ifaces: []format.Interface{{LinkType: 1}}}}}
	bad := good
	bad.ID, bad.Path, bad.Sections = 2, "/c/bad\x1b.pcap", []format.Section{{}}
	if err := s.Update(good, bad); err != nil {
		t.Fatal(err)
	}
	err := s.withDB(false, func(db *pebble.DB) error {
		b := db.NewBatch()
		b.Set(fileKey(3), []byte("{garbage"), nil)
		b.Set(schemaKey, []byte(SchemaVersion), nil)
		return b.Commit(pebble.Sync)
	})
	if err != nil {
		t.Fatal(err)
	}
	files, err := s.Catalog()
	var invalid InvalidEntries
	if !errors.As(err, &invalid) || len(invalid) != 2 || len(files) != 1 || files[0].Path != good.Path {
		t.Fatalf("catalog %+v, %v", files, err)
	}
	if got := invalid[0].Error(); got != `catalog entry for "/c/bad\x1b.pcap" is invalid: the pcap section lists 0 interfaces, not one` {
		t.Errorf("first: %s", got)
	}
	if got := invalid[1].Error(); got != "catalog entry of file 3 is invalid: "+errEntry.Error() {
		t.Errorf("second: %s", got)
	}
}
