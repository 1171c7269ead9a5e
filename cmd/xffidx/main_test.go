package main

import (
	"bytes"
	"encoding/json"
	"github.com/xffidx/xffidx/index"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const corpus = "../../testdata/corpus/"

// xffx runs the command line with an index in dir and returns exit status,
// stdout and stderr.
func xffx(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"--index", dir}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func copyFile(t *testing.T, src, dst string) []byte {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

type jsonHit struct {
	XFFIP   string `json:"xff_ip"`
	XFF     string `json:"xff"`
	File    string `json:"file"`
	Offset  int64  `json:"offset"`
	TS      string `json:"ts"`
	SrcIP   string `json:"src_ip"`
	SrcPort int    `json:"src_port"`
	DstIP   string `json:"dst_ip"`
	DstPort int    `json:"dst_port"`
	Proto   string `json:"proto"`
}

func parseHits(t *testing.T, out string) []jsonHit {
	t.Helper()
	var hits []jsonHit
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var h jsonHit
		if err := json.Unmarshal([]byte(line), &h); err != nil {
			t.Fatalf("bad NDJSON line %q: %v", line, err)
		}
		hits = append(hits, h)
	}
	return hits
}

func TestBuildQueryExitStatuses(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	copyFile(t, corpus+"xff_two_ips_small.pcap", filepath.Join(dir, "a.pcap"))
	code, _, stderr := xffx(t, ix, "build", dir)
	if code != 0 || !strings.Contains(stderr, "files: 1 new") {
		t.Fatalf("build: exit %d, stderr %q", code, stderr)
	}
	code, out, _ := xffx(t, ix, "query", "--ip", "10.3.3.3", "--format", "json")
	hits := parseHits(t, out)
	if code != 0 || len(hits) != 1 || hits[0].XFF != "10.2.2.2, 10.3.3.3" || hits[0].Proto != "tcp" {
		t.Fatalf("query: exit %d, hits %+v", code, hits)
	}
	if code, _, _ := xffx(t, ix, "query", "--ip", "192.0.2.99", "--format", "json"); code != 1 {
		t.Errorf("query for an absent address: exit %d, want 1", code)
	}
	if code, _, _ := xffx(t, ix, "query", "--ip", "not-an-ip"); code != 2 {
		t.Errorf("query for a bad address: exit %d, want 2", code)
	}
	// Building again neither duplicates hits nor rereads the file.
	code, _, stderr = xffx(t, ix, "build", dir)
	if code != 0 || !strings.Contains(stderr, ", 1 unchanged") {
		t.Errorf("rebuild: exit %d, stderr %q", code, stderr)
	}
	if _, out, _ := xffx(t, ix, "query", "--ip", "10.3.3.3", "--format", "json"); len(parseHits(t, out)) != 1 {
		t.Errorf("after rebuild: %q", out)
	}
	// A capture changed since indexing is reported, not decoded.
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(dir, "a.pcap"), later, later)
	code, out, stderr = xffx(t, ix, "query", "--ip", "10.3.3.3", "--format", "json")
	if code != 2 || out != "" || !strings.Contains(stderr, "a.pcap") || !strings.Contains(stderr, "changed") {
		t.Errorf("changed file: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// Rebuilding the changed file replaces its hits.
	xffx(t, ix, "build", dir)
	if code, out, _ := xffx(t, ix, "query", "--ip", "10.3.3.3", "--format", "json"); code != 0 || len(parseHits(t, out)) != 1 {
		t.Errorf("after rebuilding a changed file: exit %d, %q", code, out)
	}
	os.Remove(filepath.Join(dir, "a.pcap"))
	code, _, stderr = xffx(t, ix, "query", "--ip", "10.3.3.3", "--format", "json")
	if code != 2 || !strings.Contains(stderr, "no longer exists") {
		t.Errorf("vanished file: exit %d, stderr %q", code, stderr)
	}
}

// TestBadInput: a non-capture file and a capture with garbage spliced into
// its middle are errors naming the file, and everything else is indexed;
// a capture whose last record is cut is a warning only.
func TestBadInput(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	good := copyFile(t, corpus+"xff_erspan_gre_mixed.pcap", filepath.Join(dir, "good.pcap"))
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("X-Forwarded-For: 1.2.3.4\n"), 0o644)

	// Garbage in the middle: random bytes inserted at an arbitrary point.
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 5000)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	mid := len(good) / 2
	spliced := append(append(append([]byte{}, good[:mid]...), garbage...), good[mid:]...)
	os.WriteFile(filepath.Join(dir, "spliced.pcap"), spliced, 0o644)

	// The last record cut short, as in a capture still being written.
	os.WriteFile(filepath.Join(dir, "growing.pcap"), good[:len(good)-20], 0o644)

	code, _, stderr := xffx(t, ix, "build", filepath.Join(dir, "notes.txt"), dir)
	if code != 2 {
		t.Errorf("build: exit %d, want 2", code)
	}
	for _, want := range []string{"notes.txt: not a pcap or pcapng", "spliced.pcap: corrupt", "growing.pcap: last record cut short", "files: 3 new", "1 failed (1 with corrupt regions)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	// Every XFF packet of the original is found in all three copies, but
	// for the one record the splice may have cut.
	_, out, _ := xffx(t, ix, "query", "--ip", "106.113.55.163", "--format", "json")
	per := map[string]int{}
	for _, h := range parseHits(t, out) {
		per[filepath.Base(h.File)]++
	}
	if per["good.pcap"] != 2 || per["growing.pcap"] != 2 || per["spliced.pcap"] < 1 {
		t.Errorf("hits per file: %v", per)
	}
	all := 0
	for _, a := range []string{"10.128.26.2", "223.90.97.73", "117.25.33.105", "240e:474:608:1cfd:a78b:7f05:be1c:e4c8"} {
		_, out, _ := xffx(t, ix, "query", "--ip", a, "--format", "json")
		for _, h := range parseHits(t, out) {
			if filepath.Base(h.File) == "spliced.pcap" {
				all++
			}
		}
	}
	if all < 3 {
		t.Errorf("spliced.pcap: only %d of 4 sampled hits survive", all)
	}

	// A growing capture alone: warning, exit 0.
	ix2 := t.TempDir()
	code, _, stderr = xffx(t, ix2, "build", filepath.Join(dir, "growing.pcap"))
	if code != 0 || !strings.Contains(stderr, "warning") {
		t.Errorf("truncated capture: exit %d, stderr %q", code, stderr)
	}
}

// TestBuildLock: a second build waits for the first, or with --no-wait
// exits 3; queries go on meanwhile.
func TestBuildLock(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	copyFile(t, corpus+"xff_two_ips_small.pcap", filepath.Join(dir, "a.pcap"))
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatal(stderr)
	}
	copyFile(t, corpus+"xff_leading_zeros.pcap", filepath.Join(dir, "b.pcap"))
	unlock, err := (&index.Store{Dir: ix}).LockBuild(true)
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := xffx(t, ix, "build", "--no-wait", dir)
	if code != 3 || !strings.Contains(stderr, "another build") {
		t.Errorf("--no-wait while locked: exit %d, %q", code, stderr)
	}
	if code, out, _ := xffx(t, ix, "query", "--ip", "10.3.3.3", "--format", "json"); code != 0 || len(parseHits(t, out)) != 1 {
		t.Errorf("query during a build: exit %d %q", code, out)
	}
	done := make(chan int)
	go func() {
		code, _, _ := xffx(t, ix, "build", dir)
		done <- code
	}()
	select {
	case <-done:
		t.Fatal("a second build did not wait for the lock")
	case <-time.After(300 * time.Millisecond):
	}
	unlock()
	if code := <-done; code != 0 {
		t.Errorf("waiting build: exit %d", code)
	}
	if code, _, _ := xffx(t, ix, "query", "--ip", "10.0.0.3", "--format", "json"); code != 0 {
		t.Errorf("the waiting build did not index the new file: exit %d", code)
	}
}

// TestFilesStates: files reports ok, grown, changed and missing.
func TestFilesStates(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	names := []string{"ok.pcap", "grown.pcap", "changed.pcap", "missing.pcap"}
	data := map[string][]byte{}
	for _, n := range names {
		data[n] = copyFile(t, corpus+"xff_erspan_gre_mixed.pcap", filepath.Join(dir, n))
	}
	os.WriteFile(filepath.Join(dir, "grown.pcap"), data["grown.pcap"][:len(data["grown.pcap"])/2], 0o644)
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatal(stderr)
	}
	os.WriteFile(filepath.Join(dir, "grown.pcap"), data["grown.pcap"], 0o644)
	changed := data["changed.pcap"]
	changed[100] ^= 0xff
	os.WriteFile(filepath.Join(dir, "changed.pcap"), changed, 0o644)
	os.Remove(filepath.Join(dir, "missing.pcap"))
	code, out, _ := xffx(t, ix, "files", "--format", "json")
	if code != 0 {
		t.Fatalf("files: exit %d", code)
	}
	states := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var row struct{ Path, State string }
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatal(err)
		}
		states[filepath.Base(row.Path)] = row.State
	}
	want := map[string]string{"ok.pcap": "ok", "grown.pcap": "grown", "changed.pcap": "changed", "missing.pcap": "missing"}
	for n, s := range want {
		if states[n] != s {
			t.Errorf("%s: state %q, want %q", n, states[n], s)
		}
	}
	// A query reads the grown file as before, and names the others.
	code, out, stderr := xffx(t, ix, "query", "--ip", "106.113.55.163", "--format", "json")
	per := map[string]int{}
	for _, h := range parseHits(t, out) {
		per[filepath.Base(h.File)]++
	}
	if code != 2 || per["ok.pcap"] != 2 || per["grown.pcap"] != 2 || per["changed.pcap"]+per["missing.pcap"] != 0 ||
		!strings.Contains(stderr, "changed.pcap") || !strings.Contains(stderr, "missing.pcap") {
		t.Errorf("query over stale files: exit %d, hits %v, stderr %q", code, per, stderr)
	}
	// An incremental build with --prune brings everything back to ok.
	code, _, stderr = xffx(t, ix, "build", "--prune", dir)
	if code != 0 || !strings.Contains(stderr, "1 grown") || !strings.Contains(stderr, "1 changed") || !strings.Contains(stderr, "1 pruned") {
		t.Errorf("build --prune: exit %d, %q", code, stderr)
	}
	_, out, _ = xffx(t, ix, "files", "--format", "json")
	if strings.Count(out, `"state":"ok"`) != 3 {
		t.Errorf("after build --prune: %s", out)
	}
}

func TestQueryWrite(t *testing.T) {
	ix := t.TempDir()
	xffx(t, ix, "build", corpus+"xff_two_ips_small.pcap")
	out := filepath.Join(t.TempDir(), "conv.pcap")
	code, stdout, stderr := xffx(t, ix, "query", "--ip", "10.3.3.3", "--write", out)
	if code != 0 || stdout != "" || !strings.Contains(stderr, "wrote 10 packets of 1 conversations") {
		t.Fatalf("--write: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if st, err := os.Stat(out); err != nil || st.Size() < 24+10*16 {
		t.Errorf("output: %v %v", st, err)
	}
	if code, _, _ := xffx(t, ix, "query", "--ip", "192.0.2.1", "--write", out); code != 1 {
		t.Errorf("--write with no hit: exit %d", code)
	}
}

// TestInvalidCatalogEntryCommands: a crafted catalog entry (a pcap section
// without its interface) makes files, stats, query and top name it and
// exit 2, answering from the other captures; the next build indexes its
// capture again.
func TestInvalidCatalogEntryCommands(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	good, bad := filepath.Join(dir, "good.pcap"), filepath.Join(dir, "bad.pcap")
	copyFile(t, corpus+"xff_erspan_gre_mixed.pcap", good)
	copyFile(t, corpus+"xff_erspan_gre_mixed.pcap", bad)
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatal(stderr)
	}
	store := &index.Store{Dir: ix, LockWait: 5 * time.Second}
	files, err := store.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Path == bad {
			f.Sections[0].Ifaces = nil
			if err := store.Update(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	named := `catalog entry for "` + bad + `" is invalid`
	code, out, stderr := xffx(t, ix, "files", "--format", "json")
	if code != 2 || !strings.Contains(out, "good.pcap") || strings.Contains(out, "bad.pcap") || !strings.Contains(stderr, named) {
		t.Errorf("files: exit %d, %q, %q", code, out, stderr)
	}
	if code, _, stderr := xffx(t, ix, "stats"); code != 2 || !strings.Contains(stderr, named) {
		t.Errorf("stats: exit %d, %q", code, stderr)
	}
	code, out, stderr = xffx(t, ix, "query", "--ip", "106.113.55.163", "--format", "json")
	hits := parseHits(t, out)
	if code != 2 || len(hits) != 2 || hits[0].File != good || !strings.Contains(stderr, bad+": catalog entry is invalid") {
		t.Errorf("query: exit %d, %d hits, %q", code, len(hits), stderr)
	}
	if code, out, stderr := xffx(t, ix, "top", "--format", "json"); code != 2 || out == "" || !strings.Contains(stderr, "catalog entry is invalid") {
		t.Errorf("top: exit %d, %q, %q", code, out, stderr)
	}
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 || !strings.Contains(stderr, "1 changed") {
		t.Errorf("build: exit %d, %q", code, stderr)
	}
	if code, _, stderr := xffx(t, ix, "query", "--ip", "106.113.55.163"); code != 0 {
		t.Errorf("query after the build: exit %d, %q", code, stderr)
	}
}
