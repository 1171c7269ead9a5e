package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/xffidx/xffidx/format/xff"
)

// TestScanHits: every hit of a file in the catalog, in key order, once,
// also when the scan releases the database every 256 keys and resumes;
// hits of a removed file (no catalog entry: its hits wait for Collect) are
// left out, as Lookup leaves them out.
func TestScanHits(t *testing.T) {
	s := &Store{Dir: t.TempDir(), LockWait: time.Second}
	files := []FileInfo{pcapEntry(2, "/c/b.pcap"), pcapEntry(3, "/c/a.pcap")} // 1 removed
	type hit struct {
		a   netip.Addr
		fid uint32
		off int64
		h   xff.Header
	}
	var all []hit
	for i := range 3000 {
		var a netip.Addr
		if i%3 == 0 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i % 7)})
		} else {
			a = netip.AddrFrom4([4]byte{203, 0, byte(i % 5), byte(i % 11)})
		}
		all = append(all, hit{a, uint32(1 + i%3), int64(24 + i*100), xff.Header(i % 4)})
	}
	err := s.withDB(false, func(db *pebble.DB) error {
		b := db.NewBatch()
		for _, f := range files {
			b.Set(fileKey(f.ID), appendFileInfo(nil, &f), nil)
		}
		b.Set(schemaKey, []byte(SchemaVersion), nil)
		for _, h := range all {
			b.Set(HitKey(nil, h.a, h.fid, h.off, h.h), binary.AppendUvarint(nil, 0), nil)
		}
		return b.Commit(pebble.Sync)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Of headers 0 (X-Forwarded-For) and 2 (X-Real-IP) only.
	headers := xff.SetOf(xff.XForwardedFor, xff.XRealIP)
	var want []hit
	for _, h := range all {
		if h.fid != 1 && headers.Has(h.h) {
			want = append(want, hit{h.a, h.fid, h.off, 0})
		}
	}
	slices.SortFunc(want, func(x, y hit) int {
		return bytes.Compare(HitKey(nil, x.a, x.fid, x.off, 0), HitKey(nil, y.a, y.fid, y.off, 0))
	})
	for _, hold := range []time.Duration{time.Hour, time.Nanosecond} {
		s.ScanHold = hold
		var got []hit
		err := s.ScanHits(headers, func(a netip.Addr, f *FileInfo, off int64) error {
			got = append(got, hit{a, f.ID, off, 0})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("hold %v: %d hits, want %d (first difference at %d)", hold, len(got), len(want), firstDiff(got, want))
		}
	}
	s.ScanHold = 0
	// The same hits as a look-up of everything.
	hits, _, err := s.Lookup([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, headers)
	if err != nil || len(hits) != len(want) {
		t.Errorf("lookup: %d hits, scan %d (%v)", len(hits), len(want), err)
	}
	// fn's error stops the scan.
	stop := fmt.Errorf("stop")
	n := 0
	if err := s.ScanHits(xff.AllHeaders, func(netip.Addr, *FileInfo, int64) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("stop: err %v after %d calls", err, n)
	}
}

func firstDiff[T comparable](a, b []T) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
