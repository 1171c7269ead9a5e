package query_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/ingest"
	"github.com/xffidx/xffidx/query"
	"net/netip"
)

// corpusDir finds the shared acceptance corpus (../shared/corpus beside the
// repository), or the copies in testdata/corpus.
func corpusDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{"../../shared/corpus", "../testdata/corpus"} {
		if _, err := os.Stat(filepath.Join(d, "expected-alt")); err == nil {
			abs, _ := filepath.Abs(d)
			return abs
		}
	}
	t.Skip("no corpus: neither ../shared/corpus nor testdata/corpus")
	return ""
}

// expectedHit is one row of tshark's expected-alt table.
type expectedHit struct {
	frame        int
	epoch        string
	src, dst     netip.Addr
	sport, dport uint16
	addrs        []netip.Addr
}

func readExpected(t *testing.T, path string) []expectedHit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []expectedHit
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) != 9 {
			t.Fatalf("%s: bad row %q", path, sc.Text())
		}
		last := func(s string) string { p := strings.Split(s, "|"); return p[len(p)-1] }
		var h expectedHit
		h.frame, _ = strconv.Atoi(c[0])
		h.epoch = c[1]
		src, dst := last(c[2]), last(c[5])
		if src == "" {
			src, dst = last(c[3]), last(c[6])
		}
		h.src, h.dst = netip.MustParseAddr(src), netip.MustParseAddr(dst)
		sp, _ := strconv.Atoi(last(c[4]))
		dp, _ := strconv.Atoi(last(c[7]))
		h.sport, h.dport = uint16(sp), uint16(dp)
		for _, v := range strings.Split(c[8], "|") {
			xff.Elements([]byte(v), false, func(e []byte) {
				if a, ok := xff.ParseAddr(e); ok {
					h.addrs = append(h.addrs, a)
				}
			})
		}
		out = append(out, h)
	}
	return out
}

// frameOffsets lists the record offsets of a capture, by frame number - 1.
func frameOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := format.Walker{Kind: format.Detect(data)}
	pos := 0
	if w.Kind == format.KindPcap {
		if w.Sec, err = format.ParsePcapHeader(data); err != nil {
			t.Fatal(err)
		}
		pos = 24
	}
	var offs []int64
	for pos < len(data) {
		rec, n, st := w.Next(data, 0, pos)
		switch st {
		case format.Packet:
			offs = append(offs, rec.Offset)
		case format.Header:
		case format.Short:
			return offs // a cut last record
		default:
			t.Fatalf("%s: walker stopped at %d: status %d", path, pos, st)
		}
		pos += n
	}
	return offs
}

// TestCorpusAgainstTshark indexes every corpus capture and checks each
// address of each xff_* file against tshark's expected-alt answers: the same
// packets, with tshark's innermost 5-tuple and timestamp; neg_* files give
// no hit, fmt_* files index cleanly.
func TestCorpusAgainstTshark(t *testing.T) {
	dir := corpusDir(t)
	store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
	b := &ingest.Builder{Store: store, Opts: ingest.Options{Workers: 2, ChunkSize: 4096}}
	captures, _ := filepath.Glob(filepath.Join(dir, "*.pcap*"))
	if len(captures) == 0 {
		t.Fatal("no captures in corpus")
	}
	st, err := b.Build(captures, func(r ingest.FileResult) {
		if r.Err != nil || len(r.Warnings) > 0 {
			t.Errorf("%s: err %v, warnings %q", r.Path, r.Err, r.Warnings)
		}
	})
	if err != nil || st.New != len(captures) {
		t.Fatalf("indexed %d files, want %d (%v)", st.New, len(captures), err)
	}
	catalog, err := store.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range catalog {
		name := filepath.Base(f.Path)
		want := readExpected(t, filepath.Join(dir, "expected-alt", strings.TrimSuffix(strings.TrimSuffix(name, ".pcapng"), ".pcap")+".tsv"))
		offs := frameOffsets(t, f.Path)
		if f.Packets != int64(len(offs)) {
			t.Errorf("%s: %d packets indexed, walker counts %d", name, f.Packets, len(offs))
		}
		if strings.HasPrefix(name, "neg_") || strings.HasPrefix(name, "fmt_") {
			if f.Hits != 0 || len(want) != 0 {
				t.Errorf("%s: %d hit packets, want none", name, f.Hits)
			}
			continue
		}
		// Expected packets per address, and our answer per address.
		wantBy := map[netip.Addr]map[int64]expectedHit{}
		for _, h := range want {
			for _, a := range h.addrs {
				if wantBy[a] == nil {
					wantBy[a] = map[int64]expectedHit{}
				}
				wantBy[a][offs[h.frame-1]] = h
			}
		}
		if len(wantBy) == 0 {
			t.Fatalf("%s: expected-alt lists no address", name)
		}
		for a, wantOffs := range wantBy {
			res, err := query.Lookup(store, []netip.Prefix{netip.PrefixFrom(a, a.BitLen())})
			if err != nil {
				t.Fatal(err)
			}
			got := map[int64]query.Row{}
			for _, r := range res.Rows {
				if r.File == f.Path {
					got[r.Offset] = r
				}
			}
			if len(got) != len(wantOffs) {
				t.Errorf("%s: %s: %d hits, tshark %d", name, a, len(got), len(wantOffs))
			}
			for off, h := range wantOffs {
				r, ok := got[off]
				if !ok {
					t.Errorf("%s: %s: frame %d (offset %d) not found", name, a, h.frame, off)
					continue
				}
				if r.SrcIP != h.src || r.DstIP != h.dst || r.SrcPort != h.sport || r.DstPort != h.dport {
					t.Errorf("%s: frame %d: tuple %s:%d→%s:%d, tshark %s:%d→%s:%d", name, h.frame,
						r.SrcIP, r.SrcPort, r.DstIP, r.DstPort, h.src, h.sport, h.dst, h.dport)
				}
				epoch := strconv.FormatInt(r.TS.Unix(), 10) + "." + strconv.Itoa(r.TS.Nanosecond() + 1e9)[1:]
				if epoch != h.epoch {
					t.Errorf("%s: frame %d: ts %s, tshark %s", name, h.frame, epoch, h.epoch)
				}
			}
		}
	}
}
