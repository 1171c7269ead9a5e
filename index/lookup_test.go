package index

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/xffidx/xffidx/format/xff"
)

// referenceLookup is the look-up as a plain in-memory pass: every hit key
// of the prefixes (read whole, in one opening of the database), filtered,
// sorted by path, offset, header and address, with its raw value and its
// packet's request records.
func referenceLookup(t *testing.T, s *Store, prefixes []netip.Prefix, headers xff.HeaderSet) []Hit {
	var hits []Hit
	err := s.withDB(true, func(db *pebble.DB) error {
		files, err := readCatalog(db, nil)
		if err != nil {
			return err
		}
		current := map[uint32]*FileInfo{}
		for i := range files {
			current[files[i].ID] = &files[i]
		}
		seen := map[string]bool{} // overlapping prefixes give a hit once
		for _, p := range prefixes {
			lo, hi := PrefixRange(p)
			it, _ := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
			for it.First(); it.Valid(); it.Next() {
				hk, ok := decodeHitKey(it.Key())
				if !ok || current[hk.fid] == nil || !headers.Has(hk.header) || seen[string(it.Key())] {
					continue
				}
				seen[string(it.Key())] = true
				v := it.Value()
				pos, n := binary.Uvarint(v)
				h := Hit{Addr: hk.addr, File: current[hk.fid], Offset: hk.off, Header: hk.header, Pos: int(pos), ConnStart: -1}
				if n > 0 && n < len(v) {
					c, _ := binary.Uvarint(v[n:])
					h.ConnStart, h.ConnSYN = decodeConn(hk.off, c)
				}
				if raw, closer, err := db.Get(ValueKey(nil, hk.fid, hk.off, hk.header)); err == nil {
					h.Raw = bytes.Clone(raw)
					closer.Close()
				}
				prefix := RequestKey(nil, hk.fid, hk.off, 0)
				prefix = prefix[:len(prefix)-4]
				rit, _ := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff)})
				for rit.First(); rit.Valid(); rit.Next() {
					r, err := decodeRequest(binary.BigEndian.Uint32(rit.Key()[len(prefix):]), bytes.Clone(rit.Value()))
					if err != nil {
						t.Fatal(err)
					}
					h.Requests = append(h.Requests, r)
				}
				rit.Close()
				hits = append(hits, h)
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(hits, func(a, b Hit) int {
		return cmp.Or(strings.Compare(a.File.Path, b.File.Path), cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Header, b.Header), a.Addr.Compare(b.Addr))
	})
	return hits
}

// lookupIndex writes an index whose file ids are not in path order, with
// the hits of a removed file (id 4, no catalog entry), hits of IPv4 and IPv6 addresses in every
// header (several per packet), connection starts, raw values and request
// records.
func lookupIndex(t *testing.T) *Store {
	s := &Store{Dir: t.TempDir(), LockWait: time.Second}
	files := []FileInfo{pcapEntry(1, "/c/z.pcap"), pcapEntry(2, "/c/a.pcap"), pcapEntry(3, "/c/m.pcap")}
	r := rand.New(rand.NewPCG(5, 6))
	err := s.withDB(false, func(db *pebble.DB) error {
		b := db.NewBatch()
		for _, f := range files {
			b.Set(fileKey(f.ID), appendFileInfo(nil, &f), nil)
		}
		b.Set(schemaKey, []byte(SchemaVersion), nil)
		for i := range 4000 {
			fid := uint32(1 + r.IntN(4))
			off := int64(24 + 100*r.IntN(300))
			var a netip.Addr
			if r.IntN(3) == 0 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(r.IntN(9))})
			} else {
				a = netip.AddrFrom4([4]byte{203, 0, byte(r.IntN(3)), byte(r.IntN(20))})
			}
			h := xff.Header(r.IntN(int(xff.NumHeaders)))
			v := binary.AppendUvarint(nil, uint64(r.IntN(5)))
			if r.IntN(2) == 0 {
				v = binary.AppendUvarint(v, uint64(encodeConn(off, off-int64(100*r.IntN(5)), r.IntN(2) == 0)))
			}
			b.Set(HitKey(nil, a, fid, off, h), v, nil)
			if i%7 == 0 {
				b.Set(ValueKey(nil, fid, off, h), fmt.Appendf(nil, "raw %d, %s", i, a), nil)
			}
			if i%5 == 0 {
				for seq := range uint32(1 + r.IntN(2)) {
					req := Request{Seq: 1000 + seq, Method: []byte("GET"), Target: fmt.Appendf(nil, "/%d", i), Host: []byte("h"), First: true, Complete: true, Listed: xff.SetOf(h)}
					req.Lists[h] = []byte(a.String())
					b.Set(RequestKey(nil, fid, off, req.Seq), appendRequest(nil, &req), nil)
				}
			}
		}
		return b.Commit(pebble.Sync)
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLookupEach: LookupEach gives what an in-memory look-up gives, hit
// for hit, whether it sorts in memory or spills runs to temporary files,
// and whether it holds the database throughout or lets go of it every
// few keys; fn's error stops it.
func TestLookupEach(t *testing.T) {
	s := lookupIndex(t)
	pfx := func(ss ...string) []netip.Prefix {
		var ps []netip.Prefix
		for _, p := range ss {
			ps = append(ps, netip.MustParsePrefix(p))
		}
		return ps
	}
	for _, c := range []struct {
		prefixes []netip.Prefix
		headers  xff.HeaderSet
	}{
		{pfx("203.0.1.7/32"), xff.AllHeaders},
		{pfx("203.0.0.0/16", "2001:db8::/32"), xff.AllHeaders},
		{pfx("0.0.0.0/0", "::/0"), xff.SetOf(xff.Forwarded, xff.XRealIP)},
		{pfx("203.0.2.0/24", "203.0.2.5/32", "2001:db8::3/128"), xff.AllHeaders},                                                  // overlapping: each hit once
		{pfx("203.0.2.5/32", "2001:db8::/32", "203.0.0.0/16", "203.0.1.7/32", "2001:db8::3/128", "203.0.2.5/32"), xff.AllHeaders}, // out of order, nested, repeated
	} {
		want := referenceLookup(t, s, c.prefixes, c.headers)
		if len(want) < 20 {
			t.Fatalf("%v: only %d hits to compare", c.prefixes, len(want))
		}
		for _, mem := range []int{0, 2000} {
			for _, hold := range []time.Duration{0, time.Nanosecond} {
				s.SortMem, s.ScanHold = mem, hold
				var got []Hit
				info, err := s.LookupEach(c.prefixes, c.headers, func(h Hit) error {
					got = append(got, h)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if (mem > 0) != (info.Spills > 0) {
					t.Errorf("%v, memory %d: %d spills", c.prefixes, mem, info.Spills)
				}
				if len(got) != len(want) {
					t.Fatalf("%v, memory %d, hold %v: %d hits, want %d", c.prefixes, mem, hold, len(got), len(want))
				}
				for i := range got {
					g, w := got[i], want[i]
					if g.File.ID != w.File.ID || g.Offset != w.Offset || g.Header != w.Header || g.Addr != w.Addr || g.Pos != w.Pos ||
						g.ConnStart != w.ConnStart || g.ConnSYN != w.ConnSYN || !bytes.Equal(g.Raw, w.Raw) || !reflect.DeepEqual(g.Requests, w.Requests) {
						t.Fatalf("%v, memory %d, hold %v: hit %d is %+v, want %+v", c.prefixes, mem, hold, i, g, w)
					}
				}
			}
		}
	}
	s.SortMem, s.ScanHold = 0, 0
	stop := errors.New("stop")
	n := 0
	if _, err := s.LookupEach(pfx("0.0.0.0/0"), xff.AllHeaders, func(Hit) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("stop: %v after %d hits", err, n)
	}
}
