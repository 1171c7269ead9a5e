package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/index"

	"github.com/xffidx/xffidx/format/xff"
)

// TestMain lets a test run the command line in a child process (to kill
// it, or under the umask XFFIDX_TEST_UMASK, in octal).
func TestMain(m *testing.M) {
	if os.Getenv("XFFIDX_TEST_CLI") == "1" {
		if u, err := strconv.ParseUint(os.Getenv("XFFIDX_TEST_UMASK"), 8, 32); err == nil {
			syscall.Umask(int(u))
		}
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// killAfter runs the command line with args in a child process (this test
// binary, through TestMain) and sends it SIGKILL after d. It reports whether
// the kill ended it; a child that finished before must have succeeded (and
// is not waited for longer than it takes).
func killAfter(t *testing.T, d time.Duration, args ...string) bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "XFFIDX_TEST_CLI=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(d):
		cmd.Process.Signal(syscall.SIGKILL)
		err = <-done
	}
	if err == nil {
		return false
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	t.Fatalf("xffidx %v: %v\n%s", args, err, stderr.String())
	return false
}

// hitsByFile reads every hit of an index, grouped by file path.
func hitsByFile(t *testing.T, dir string) map[string][]string {
	t.Helper()
	store := &index.Store{Dir: dir, LockWait: 10 * time.Second}
	out := map[string][]string{}
	if !store.Exists() {
		return out
	}
	hits, files, err := store.Lookup([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, xff.AllHeaders)
	if errors.Is(err, index.ErrNoIndex) {
		return out // killed while creating the database: nothing committed
	}
	if err != nil {
		t.Fatalf("index unreadable after a kill: %v", err)
	}
	for _, f := range files {
		out[f.Path] = []string{fmt.Sprintf("packets=%d hits=%d addrs=%d", f.Packets, f.Hits, f.Addresses)}
	}
	for _, h := range hits {
		out[h.File.Path] = append(out[h.File.Path], fmt.Sprint(h.Addr, "@", h.Offset, "#", h.Pos))
	}
	for p := range out {
		slices.Sort(out[p])
	}
	return out
}

// TestKilledBuildsLoseNothing kills builds with SIGKILL at random moments,
// many times. After every kill the index must answer, each file wholly or
// not at all; a last build must then reach exactly a clean build's index.
func TestKilledBuildsLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir, ix, clean := t.TempDir(), t.TempDir(), t.TempDir()
	for i := range 5 {
		var buf bytes.Buffer
		capgen.Write(&buf, capgen.Config{Seed: int64(500 + i), Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: 12 << 20, XFFRate: 0.05, NoTruth: true})
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("c%d.pcap", i)), buf.Bytes(), 0o644)
	}
	t0 := time.Now()
	if code, _, stderr := xffx(t, clean, "build", dir); code != 0 {
		t.Fatalf("clean build: %d %s", code, stderr)
	}
	took := time.Since(t0)
	want := hitsByFile(t, clean)
	partial := 0

	rng := rand.New(rand.NewPCG(5, 5))
	killed := 0
	// The kill lands at a random moment up to span. A child process starts
	// slower than the in-process clean build, so span starts at 1.5 times
	// it; on a loaded machine builds may be faster or slower than that
	// measure, so span shrinks after a build that finished and grows after
	// one killed before it committed anything.
	span := took*3/2 + 20*time.Millisecond
	for round := range 30 {
		if killAfter(t, time.Duration(rng.Int64N(int64(span))), "--index", ix, "build", "--workers", "2", dir) {
			killed++
		} else {
			span = span * 3 / 4
		}
		got := hitsByFile(t, ix)
		if len(got) > 0 && len(got) < len(want) {
			partial++
		} else if len(got) == 0 {
			span = span * 5 / 4
		}
		for path, hits := range got {
			if !slices.Equal(hits, want[path]) {
				t.Fatalf("round %d: %s is half indexed: %d entries, clean build %d", round, path, len(hits), len(want[path]))
			}
		}
		if len(got) == len(want) && round < 29 {
			// Done: start over, so that the next kills land in a build again.
			os.RemoveAll(ix)
		}
	}
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatalf("final build: %d %s", code, stderr)
	}
	got := hitsByFile(t, ix)
	if len(got) != len(want) {
		t.Fatalf("%d files after the final build, clean build %d", len(got), len(want))
	}
	for path := range want {
		if !slices.Equal(got[path], want[path]) {
			t.Errorf("%s differs from a clean build", path)
		}
	}
	t.Logf("%d of 30 builds killed before they finished; %d kills left some files committed and others not", killed, partial)
	if killed < 10 || partial < 3 {
		t.Errorf("%d builds killed, %d mid-way: the test did not test much", killed, partial)
	}
	// No scratch files are left behind once a build has run again.
	if m, _ := filepath.Glob(filepath.Join(ix, "tmp", "*")); len(m) > 0 {
		t.Errorf("scratch files left: %v", m)
	}
}
