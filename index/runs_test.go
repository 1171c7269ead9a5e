package index

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/xffidx/xffidx/format/xff"
)

// fillTable adds the same hits (with duplicates) and request records (some
// recorded twice: the later counts) to a table builder, whatever its spill
// sizes.
func fillTable(t *testing.T, tb *TableBuilder) {
	t.Helper()
	rng := rand.New(rand.NewPCG(15, 15))
	for i := range 30000 {
		a := netip.AddrFrom4([4]byte{198, 51, byte(rng.IntN(4)), byte(rng.IntN(256))})
		if rng.IntN(4) == 0 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(rng.IntN(4)), 15: byte(rng.IntN(256))})
		}
		off := int64(rng.IntN(20000)) * 64
		if err := tb.AddHit(a, off, xff.Header(rng.IntN(int(xff.NumHeaders))), rng.IntN(5), off-int64(rng.IntN(5000)), i%3 == 0); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			r := Request{Seq: uint32(rng.IntN(3)), Method: []byte("GET"), Target: fmt.Appendf(nil, "/%d", i), Complete: true}
			if err := tb.AddRequest(int64(rng.IntN(2000))*64, &r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tb.SetState([]byte("state")); err != nil {
		t.Fatal(err)
	}
}

// dumpIndex returns every key and value of the store's database.
func dumpIndex(t *testing.T, s *Store) []byte {
	t.Helper()
	var out bytes.Buffer
	err := s.withDB(true, func(db *pebble.DB) error {
		it, err := db.NewIter(nil)
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			fmt.Fprintf(&out, "%x %x\n", it.Key(), it.Value())
		}
		return it.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// buildTable writes the table of fillTable into a new index in dir, with
// the given spill sizes, and returns the number of hit and extras runs.
func buildTable(t *testing.T, dir string, spillEntries, spillBytes int) (*Store, int, int) {
	t.Helper()
	s := &Store{Dir: dir, LockWait: time.Second}
	tb, err := s.NewTable(9)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Discard()
	tb.spillEntries, tb.extras.spill = spillEntries, spillBytes
	fillTable(t, tb)
	runs, extrasRuns := len(tb.runs), len(tb.extras.runs)
	tables, err := tb.Finish(FileInfo{Path: "/many.pcap", Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(tables); err != nil {
		t.Fatal(err)
	}
	return s, runs, extrasRuns
}

const fewFDsEnv = "XFFIDX_TEST_FEW_FDS"

// TestManyRunsFewDescriptors: a table spilled to hundreds of runs is built
// with at most 64 descriptors open (the test runs itself again with
// RLIMIT_NOFILE 64), and its index equals that of a table built in memory.
func TestManyRunsFewDescriptors(t *testing.T) {
	if dir := os.Getenv(fewFDsEnv); dir != "" {
		lim := syscall.Rlimit{Cur: 64, Max: 64}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		_, runs, extrasRuns := buildTable(t, dir, 100, 2<<10)
		if runs < 200 || extrasRuns < 64 {
			t.Fatalf("%d hit runs and %d extras runs: too few to need more descriptors than allowed", runs, extrasRuns)
		}
		fmt.Printf("runs %d %d\n", runs, extrasRuns)
		return
	}
	want, runs, extrasRuns := buildTable(t, t.TempDir(), 1<<20, 1<<30)
	if runs != 0 || extrasRuns != 0 {
		t.Fatalf("the reference spilled: %d and %d runs", runs, extrasRuns)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestManyRunsFewDescriptors$", "-test.v")
	cmd.Env = append(os.Environ(), fewFDsEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the build with 64 descriptors: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("runs ")) {
		t.Fatalf("the child did not build:\n%s", out)
	}
	got := dumpIndex(t, &Store{Dir: dir, LockWait: time.Second})
	if ref := dumpIndex(t, want); !bytes.Equal(got, ref) {
		gl, rl := bytes.Split(got, []byte("\n")), bytes.Split(ref, []byte("\n"))
		for i := range min(len(gl), len(rl)) {
			if !bytes.Equal(gl[i], rl[i]) {
				t.Errorf("the index built from runs differs from the one built in memory: line %d: %s, in memory %s", i, gl[i], rl[i])
				break
			}
		}
	}
}
