package index

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/xffidx/xffidx/format/xff"
)

// commitFile indexes a file of fid with hits of addrs (offsets 100, 200,
// ...) and a request record, replacing the files replaces names.
func commitFile(t *testing.T, s *Store, fid uint32, path string, addrs []string, replaces ...FileInfo) FileInfo {
	t.Helper()
	tb, err := s.NewTable(fid)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Discard()
	for i, a := range addrs {
		if err := tb.AddHit(netip.MustParseAddr(a), int64(i+1)*100, xff.XForwardedFor, 0, -1, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.AddRequest(100, &Request{Seq: 7, Method: []byte("GET")}); err != nil {
		t.Fatal(err)
	}
	info := pcapEntry(fid, path)
	info.Addresses = int64(len(addrs))
	tables, err := tb.Finish(info, replaces...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(tables); err != nil {
		t.Fatal(err)
	}
	return info
}

// countKeys counts the keys of a table.
func countKeys(t *testing.T, s *Store, tag byte) int {
	t.Helper()
	n := 0
	err := s.withDB(true, func(db *pebble.DB) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tag}, UpperBound: []byte{tag + 1}})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			n++
		}
		return it.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var all = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// TestReplaceAndCollect: a changed file's new table removes its old entry in
// the same Ingest; a deleted file's hits stop answering at once and are
// removed by Collect; ids of removed files are never given again.
func TestReplaceAndCollect(t *testing.T) {
	s := &Store{Dir: t.TempDir(), LockWait: time.Second}
	a := commitFile(t, s, 1, "/a.pcap", []string{"192.0.2.1", "192.0.2.2"})
	commitFile(t, s, 2, "/b.pcap", []string{"192.0.2.1"})
	c := commitFile(t, s, 3, "/c.pcap", []string{"192.0.2.3", "2001:db8::3"})
	// a.pcap changed: indexed again as file 4, replacing file 1.
	commitFile(t, s, 4, "/a.pcap", []string{"192.0.2.9"}, a)
	files, err := s.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || files[0].ID != 2 || files[2].ID != 4 {
		t.Fatalf("catalog after the replacement: %+v", files)
	}
	hitsOf := func() map[uint32]int {
		hits, _, err := s.Lookup(all, xff.AllHeaders)
		if err != nil {
			t.Fatal(err)
		}
		n := map[uint32]int{}
		for _, h := range hits {
			n[h.File.ID]++
			if h.Offset == 100 && len(h.Requests) != 1 {
				t.Errorf("file %d: %d requests at offset 100", h.File.ID, len(h.Requests))
			}
		}
		return n
	}
	if n := hitsOf(); n[1] != 0 || n[4] != 1 || n[2] != 1 || n[3] != 2 {
		t.Errorf("hits by file after the replacement: %v", n)
	}
	if err := s.Delete(c); err != nil {
		t.Fatal(err)
	}
	if n := hitsOf(); n[3] != 0 || n[2] != 1 || n[4] != 1 {
		t.Errorf("hits by file after deleting file 3: %v", n)
	}
	if id, err := s.NextID(); err != nil || id != 5 {
		t.Errorf("next id %d %v, want 5", id, err)
	}
	// Request records of removed files go with their catalog entries.
	if n := countKeys(t, s, tagRequest); n != 2 {
		t.Errorf("%d request records, want those of files 2 and 4", n)
	}
	// Dead entries (2 of file 1, 2 of file 3) against 2 live ones.
	st, err := s.Collect(2)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 2 || st.Removed != 4 || st.Visited != 6 {
		t.Errorf("collect: %+v, want 2 files, 4 hits removed of 6", st)
	}
	if st, err := s.Collect(-1); err != nil || st.Files != 0 || st.Removed != 0 {
		t.Errorf("second collect: %+v %v", st, err)
	}
	// File 3 had the highest id, and its dead record is gone: its id is
	// still not given again.
	if id, err := s.NextID(); err != nil || id != 5 {
		t.Errorf("next id after collect %d %v, want 5", id, err)
	}
	if n := hitsOf(); len(n) != 2 || n[2] != 1 || n[4] != 1 {
		t.Errorf("hits by file after collect: %v", n)
	}
}

// TestCollectWaitsForAShare: Collect leaves a few dead entries where they
// are, until they are a quarter of the live ones.
func TestCollectWaitsForAShare(t *testing.T) {
	s := &Store{Dir: t.TempDir(), LockWait: time.Second}
	var live []string
	for i := range 40 {
		live = append(live, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).String())
	}
	commitFile(t, s, 1, "/live.pcap", live)
	dead := commitFile(t, s, 2, "/gone.pcap", []string{"192.0.2.1", "192.0.2.2"})
	if err := s.Delete(dead); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Collect(40); err != nil || st.Visited != 0 {
		t.Errorf("2 dead entries against 40 live: %+v %v", st, err)
	}
	if st, err := s.Collect(8); err != nil || st.Removed != 2 {
		t.Errorf("2 dead entries against 8 live: %+v %v", st, err)
	}
}
