package main

import (
	"bytes"
	"encoding/json"
	"github.com/xffidx/xffidx/index"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	// Nothing found, nothing written.
	none := filepath.Join(filepath.Dir(out), "none.pcap")
	if code, _, _ := xffx(t, ix, "query", "--ip", "192.0.2.1", "--write", none); code != 1 {
		t.Errorf("--write with no hit: exit %d", code)
	}
	if _, err := os.Lstat(none); err == nil {
		t.Errorf("--write with no hit wrote %s", none)
	}
}

// TestQueryWriteKeepsCaptures: --write never truncates or replaces a
// capture in the index (by its path, a hard link to it, or a symbolic link
// to it), never writes through a symbolic link, replaces an existing file
// only with --force, and leaves the output readable by its owner alone.
func TestQueryWriteKeepsCaptures(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	victim := filepath.Join(dir, "victim.pcap")
	orig := copyFile(t, corpus+"xff_two_ips_small.pcap", victim)
	if code, _, stderr := xffx(t, ix, "build", victim); code != 0 {
		t.Fatalf("build: exit %d, %s", code, stderr)
	}
	hard := filepath.Join(dir, "hard.pcap")
	if err := os.Link(victim, hard); err != nil {
		t.Fatal(err)
	}
	toVictim := filepath.Join(dir, "to-victim.pcap")
	os.Symlink(victim, toVictim)
	other := filepath.Join(dir, "other.txt")
	os.WriteFile(other, []byte("not to be overwritten"), 0o644)
	toOther := filepath.Join(dir, "to-other.pcap")
	os.Symlink(other, toOther)
	existing := filepath.Join(dir, "existing.pcap")
	os.WriteFile(existing, []byte("an earlier output"), 0o644)

	write := func(out string, extra ...string) (int, string) {
		code, _, stderr := xffx(t, ix, append([]string{"query", "--ip", "10.3.3.3", "--file", "victim.pcap", "--write", out}, extra...)...)
		return code, stderr
	}
	for _, c := range []struct {
		out   string
		force bool
		want  string // in the message
	}{
		{victim, false, "is the indexed capture"},
		{victim, true, "is the indexed capture"},
		{hard, true, "is the indexed capture"},
		{toVictim, true, "symbolic link"},
		{toOther, false, "symbolic link"},
		{toOther, true, "symbolic link"},
		{existing, false, "--force"},
	} {
		var extra []string
		if c.force {
			extra = []string{"--force"}
		}
		code, stderr := write(c.out, extra...)
		if code != 2 || !strings.Contains(stderr, c.out) || !strings.Contains(stderr, c.want) {
			t.Errorf("--write %s (force %v): exit %d, stderr %q; want 2 and %q", filepath.Base(c.out), c.force, code, stderr, c.want)
		}
	}
	if b, _ := os.ReadFile(victim); !bytes.Equal(b, orig) {
		t.Errorf("the capture changed: %d bytes, was %d", len(b), len(orig))
	}
	if b, _ := os.ReadFile(other); string(b) != "not to be overwritten" {
		t.Errorf("a symbolic link was followed: %q", b)
	}
	if b, _ := os.ReadFile(existing); string(b) != "an earlier output" {
		t.Errorf("an existing file was replaced without --force: %q", b)
	}
	if fi, err := os.Lstat(toOther); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symbolic link was replaced: %v %v", fi, err)
	}

	// With --force an existing output is replaced; a new one is created;
	// both 0600, both whole captures, no temporary file left behind.
	for _, out := range []string{existing, filepath.Join(dir, "new.pcap")} {
		if code, stderr := write(out, "--force"); code != 0 || !strings.Contains(stderr, "wrote 10 packets") {
			t.Fatalf("--write %s --force: exit %d, %q", out, code, stderr)
		}
		fi, err := os.Stat(out)
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() < 24+10*16 {
			t.Errorf("%s: %v, %v; want a 0600 capture", out, fi, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".xffidx-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
	if code, stderr := write(filepath.Join(dir, "new.pcap")); code != 2 || !strings.Contains(stderr, "--force") {
		t.Errorf("--write over the previous output without --force: exit %d, %q", code, stderr)
	}
}

// TestMessagesEscaped: file and index names in messages reach the
// terminal escaped as query output is: no control character, no
// bidirectional override.
func TestMessagesEscaped(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "notes\u202etxt.pcap\x1b]0;owned\x07")
	os.WriteFile(bad, []byte("not a capture"), 0o644)
	for _, args := range [][]string{
		{"build", bad},
		{"--index", filepath.Join(dir, "ix\x1b[2J\u2066"), "query", "--ip", "192.0.2.1"},
	} {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		msg := errb.String()
		if code != 2 || strings.ContainsAny(msg, "\x1b\x07\u202e\u2066") || !strings.Contains(msg, `\x1b`) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and the names escaped", args, code, msg)
		}
	}
}

// Without a home directory there is no default index: every command asks
// for --index instead of making one in the working directory.
func TestNoHomeAsksForIndex(t *testing.T) {
	capture, err := filepath.Abs(corpus + "xff_two_ips_small.pcap")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", "")
	t.Setenv("XFFIDX_INDEX", "")
	t.Setenv("XDG_DATA_HOME", "")
	cwd := t.TempDir()
	t.Chdir(cwd)
	for _, args := range [][]string{
		{"build", capture},
		{"query", "--ip", "10.3.3.3"},
		{"files"}, {"stats"}, {"prune"}, {"compact"}, {"top"},
	} {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "--index") || !strings.Contains(errb.String(), "XFFIDX_INDEX") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a request for --index", args, code, errb.String())
		}
	}
	if entries, err := os.ReadDir(cwd); err != nil || len(entries) != 0 {
		t.Errorf("working directory holds %v (%v); want nothing", entries, err)
	}
}

// A FIFO named on the command line is refused at once (it would block the
// build, holding the build lock, until a writer came), and the other
// captures are indexed; the next --no-wait build finds the lock free.
func TestBuildRefusesFIFO(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	fifo := filepath.Join(dir, "fifo.pcap")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "a.pcap")
	copyFile(t, corpus+"xff_two_ips_small.pcap", good)
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := xffx(t, ix, "build", "--no-wait", fifo, good)
		done <- result{code, stderr}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		// Unblock the build's open so that the test can end.
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		t.Fatal("build blocked on a FIFO")
	}
	if r.code != 2 || !strings.Contains(r.stderr, fifo+": not a regular file (a named pipe)") || !strings.Contains(r.stderr, "1 new") {
		t.Fatalf("build: exit %d, stderr %q; want 2, the FIFO named as not a regular file, the capture indexed", r.code, r.stderr)
	}
	if code, _, stderr := xffx(t, ix, "build", "--no-wait", good); code != 0 {
		t.Fatalf("next build: exit %d, stderr %q", code, stderr)
	}
	if code, out, _ := xffx(t, ix, "query", "--ip", "10.3.3.3", "--format", "json"); code != 0 || len(parseHits(t, out)) != 1 {
		t.Fatalf("query: exit %d, out %q", code, out)
	}
}

// A capture emptied or overwritten with something that is not a capture
// loses its entry at the next build (over its directory or naming it) or
// prune, with a warning; the state then settles: queries stop naming it,
// and later builds have nothing to say about it.
func TestNoLongerACapture(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace func(path string) error
		run     func(dir, path string) []string
		why     string
	}{
		{"emptied, build over the directory", func(p string) error { return os.Truncate(p, 0) },
			func(dir, _ string) []string { return []string{"build", dir} }, "empty file"},
		{"emptied, build naming it", func(p string) error { return os.Truncate(p, 0) },
			func(_, p string) []string { return []string{"build", p} }, "empty file"},
		{"overwritten with text, prune", func(p string) error { return os.WriteFile(p, []byte("not a capture\n"), 0o644) },
			func(string, string) []string { return []string{"prune"} }, "not a pcap or pcapng capture"},
		{"replaced by a FIFO, build over the directory", func(p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return syscall.Mkfifo(p, 0o644)
		}, func(dir, _ string) []string { return []string{"build", dir} }, "not a regular file (a named pipe)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, ix := t.TempDir(), t.TempDir()
			path := filepath.Join(dir, "a.pcap")
			copyFile(t, corpus+"xff_erspan_gre_mixed.pcap", path)
			copyFile(t, corpus+"xff_erspan_gre_mixed.pcap", filepath.Join(dir, "b.pcap"))
			if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
				t.Fatal(stderr)
			}
			if err := tc.replace(path); err != nil {
				t.Fatal(err)
			}
			if code, _, stderr := xffx(t, ix, "query", "--ip", "106.113.55.163"); code != 2 || !strings.Contains(stderr, path) {
				t.Fatalf("query before: exit %d, stderr %q; want 2 naming %s", code, stderr, path)
			}
			code, _, stderr := xffx(t, ix, tc.run(dir, path)...)
			if code != 0 || !strings.Contains(stderr, "warning: "+path+": no longer a capture ("+tc.why) || !strings.Contains(stderr, "1 pruned") {
				t.Fatalf("%v: exit %d, stderr %q", tc.run(dir, path), code, stderr)
			}
			code, out, stderr := xffx(t, ix, "query", "--ip", "106.113.55.163", "--format", "json")
			if hits := parseHits(t, out); code != 0 || stderr != "" || len(hits) != 2 || filepath.Base(hits[0].File) != "b.pcap" {
				t.Fatalf("query after: exit %d, hits %+v, stderr %q", code, hits, stderr)
			}
			code, _, stderr = xffx(t, ix, "build", dir)
			if code != 0 || strings.Contains(stderr, "warning") || !strings.Contains(stderr, "0 pruned") {
				t.Fatalf("next build: exit %d, stderr %q", code, stderr)
			}
		})
	}
}

// A capture overwritten in place with other bytes of the same size, its
// modification time set back (`cat other.pcap > live.pcap; touch -r saved
// live.pcap`), is not the file that was indexed: query reports it changed
// instead of decoding its records as the indexed ones, and build indexes
// it again. A chmod alone (status change, same bytes) changes nothing.
func TestSameSizeAndMtimeOtherBytes(t *testing.T) {
	dir, ix := t.TempDir(), t.TempDir()
	live := filepath.Join(dir, "live.pcap")
	orig := copyFile(t, corpus+"xff_erspan_gre_mixed.pcap", live)
	if code, _, stderr := xffx(t, ix, "build", dir); code != 0 {
		t.Fatal(stderr)
	}
	saved, err := os.Stat(live)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a status change time of its own
	if err := os.Chmod(live, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr := 0, ""
	if code, _, stderr = xffx(t, ix, "build", dir); code != 0 || !strings.Contains(stderr, "1 unchanged") {
		t.Fatalf("build after chmod: exit %d, %q", code, stderr)
	}
	other := bytes.ReplaceAll(orig, []byte("106.113.55.163"), []byte("106.113.55.164"))
	if bytes.Equal(other, orig) {
		t.Fatal("the capture does not hold the address")
	}
	f, err := os.OpenFile(live, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(other); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(live, saved.ModTime(), saved.ModTime()); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := xffx(t, ix, "query", "--ip", "106.113.55.163", "--format", "json")
	if hits := parseHits(t, out); code != 2 || len(hits) != 0 || !strings.Contains(stderr, live) || !strings.Contains(stderr, "changed") {
		t.Fatalf("query of the overwritten capture: exit %d, hits %+v, stderr %q; want 2, no rows, the file named as changed", code, hits, stderr)
	}
	if code, _, stderr = xffx(t, ix, "build", dir); code != 0 || !strings.Contains(stderr, "1 changed") {
		t.Fatalf("build: exit %d, %q", code, stderr)
	}
	if code, _, _ := xffx(t, ix, "query", "--ip", "106.113.55.163"); code != 1 {
		t.Errorf("query for the old address after the build: exit %d, want 1", code)
	}
	if code, out, _ := xffx(t, ix, "query", "--ip", "106.113.55.164", "--format", "json"); code != 0 || len(parseHits(t, out)) != 2 {
		t.Errorf("query for the new address after the build: exit %d, %s", code, out)
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
