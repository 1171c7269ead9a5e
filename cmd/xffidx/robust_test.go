package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
)

// robustCaptures copies a few corpus captures to a directory of their own.
func robustCaptures(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{"xff_erspan_gre_mixed.pcap", "xff_two_ips_small.pcap", "xff_leading_zeros.pcap", "xff_out_of_order_squid.pcap", "xff_with_original_forwarded_for.pcap"} {
		copyFile(t, corpus+n, filepath.Join(dir, n))
	}
	// And enough hits for the index to hold blocks of hits alone.
	var buf bytes.Buffer
	capgen.Write(&buf, capgen.Config{Seed: 42, Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, TargetBytes: 1 << 20, XFFRate: 0.1, NoTruth: true})
	if err := os.WriteFile(filepath.Join(dir, "gen.pcap"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyIndex copies an index directory, modes included.
func copyIndex(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			if err := os.MkdirAll(filepath.Join(dst, rel), 0o700); err != nil {
				return err
			}
			return os.Chmod(filepath.Join(dst, rel), info.Mode().Perm())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// damage xors n bytes of the index's only table at offset at (from the end
// if negative).
func damage(t *testing.T, ix string, at int64, n int) {
	t.Helper()
	ssts, _ := filepath.Glob(filepath.Join(ix, "db", "*.sst"))
	if len(ssts) != 1 {
		t.Fatalf("%d tables, want 1 (after compact)", len(ssts))
	}
	b, err := os.ReadFile(ssts[0])
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 {
		at += int64(len(b))
	}
	for i := range int64(n) {
		b[at+i] ^= 0xa5
	}
	if err := os.WriteFile(ssts[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// oneLineError checks that a command failed with exit 2 and one line on
// stderr holding each of want.
func oneLineError(t *testing.T, what string, code int, stderr string, want ...string) {
	t.Helper()
	if code != 2 || strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
		t.Errorf("%s: exit %d, stderr %q; want exit 2 and one line", what, code, stderr)
		return
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("%s: stderr %q lacks %q", what, stderr, w)
		}
	}
}

// TestCorruptIndex: a table whose footer is damaged, or one of whose data
// blocks holding hits is, makes every command that reads it fail with one
// line naming the index and the way out (exit 2), never a panic; `build
// --rebuild` then sets the damaged database aside, keeps it, and indexes the
// captures the old one listed again (or, when its list cannot be read, the
// captures named), giving the undamaged index's answers.
func TestCorruptIndex(t *testing.T) {
	caps, clean := robustCaptures(t), t.TempDir()
	if code, _, stderr := xffx(t, clean, "build", caps); code != 0 {
		t.Fatalf("build: %d %s", code, stderr)
	}
	if code, _, stderr := xffx(t, clean, "compact"); code != 0 {
		t.Fatalf("compact: %d %s", code, stderr)
	}
	_, wantHits, _ := xffx(t, clean, "query", "--cidr", "0.0.0.0/0", "--cidr", "::/0", "--format", "json")
	_, wantFiles, _ := xffx(t, clean, "files", "--format", "json")
	if len(parseHits(t, wantHits)) < 10 {
		t.Fatalf("too few hits to test with: %q", wantHits)
	}
	answers := func(ix string) {
		t.Helper()
		if _, out, _ := xffx(t, ix, "query", "--cidr", "0.0.0.0/0", "--cidr", "::/0", "--format", "json"); out != wantHits {
			t.Errorf("after --rebuild, query gives\n%s\nwant\n%s", out, wantHits)
		}
		if _, out, _ := xffx(t, ix, "files", "--format", "json"); out != wantFiles {
			t.Errorf("after --rebuild, files gives\n%s\nwant\n%s", out, wantFiles)
		}
	}
	aside := func(ix string) []string {
		m, _ := filepath.Glob(filepath.Join(ix, "db.damaged-*"))
		return m
	}

	t.Run("footer", func(t *testing.T) {
		ix := t.TempDir()
		copyIndex(t, clean, ix)
		damage(t, ix, -20, 4)
		for _, args := range [][]string{{"files"}, {"stats"}, {"query", "--ip", "106.113.55.163"}, {"query", "--cidr", "10.0.0.0/8"}, {"top"}, {"build", caps}, {"prune"}} {
			code, _, stderr := xffx(t, ix, args...)
			oneLineError(t, strings.Join(args, " "), code, stderr, "index "+ix+" is corrupt (", ".sst", "xffidx build --rebuild", "delete "+ix)
		}
		// The catalog is in the damaged table: --rebuild asks for the
		// captures, and changes nothing meanwhile.
		code, _, stderr := xffx(t, ix, "build", "--rebuild")
		oneLineError(t, "build --rebuild", code, stderr, "index "+ix, "cannot be read", "xffidx build --rebuild PATH")
		if len(aside(ix)) != 0 {
			t.Errorf("the database was moved although nothing was rebuilt")
		}
		code, _, stderr = xffx(t, ix, "build", "--rebuild", caps)
		if code != 0 || len(aside(ix)) != 1 || !strings.Contains(stderr, aside(ix)[0]) {
			t.Fatalf("build --rebuild %s: exit %d, set aside %v, stderr %q", caps, code, aside(ix), stderr)
		}
		// The library's warning reads as the command's own lines do.
		if want := "xffidx: warning: the list of indexed captures cannot be read: indexing the paths given only (index=" + ix; !strings.Contains(stderr, want) || strings.Contains(stderr, "level=") {
			t.Errorf("build --rebuild %s: stderr %q, want a line starting %q", caps, stderr, want)
		}
		answers(ix)
	})

	t.Run("hits block", func(t *testing.T) {
		// The first place where damage leaves the catalog readable and makes
		// a scan of every address fail: a data block of hits.
		ssts, _ := filepath.Glob(filepath.Join(clean, "db", "*.sst"))
		fi, err := os.Stat(ssts[0])
		if err != nil {
			t.Fatal(err)
		}
		var ix string
		for at := int64(64); ; at += 256 {
			if at+8 > fi.Size() {
				t.Fatal("no damage leaves the catalog readable and the hits not")
			}
			ix = t.TempDir()
			copyIndex(t, clean, ix)
			damage(t, ix, at, 8)
			if code, _, _ := xffx(t, ix, "files"); code != 0 {
				continue
			}
			if code, _, _ := xffx(t, ix, "query", "--cidr", "0.0.0.0/0", "--cidr", "::/0"); code == 2 {
				break
			}
		}
		for _, args := range [][]string{{"query", "--cidr", "0.0.0.0/0", "--cidr", "::/0"}, {"top"}} {
			code, _, stderr := xffx(t, ix, args...)
			oneLineError(t, strings.Join(args, " "), code, stderr, "index "+ix+" is corrupt (", "checksum mismatch", "xffidx build --rebuild")
		}
		code, _, stderr := xffx(t, ix, "build", "--rebuild")
		if code != 0 || len(aside(ix)) != 1 || !strings.Contains(stderr, "moved to "+aside(ix)[0]) || !strings.Contains(stderr, "files: 6 new") {
			t.Fatalf("build --rebuild: exit %d, set aside %v, stderr %q", code, aside(ix), stderr)
		}
		answers(ix)
		// The damaged database is kept as it was.
		if ssts, _ := filepath.Glob(filepath.Join(aside(ix)[0], "*.sst")); len(ssts) != 1 {
			t.Errorf("the damaged database was not kept: %v", ssts)
		}
	})
}

// xffxProc runs the command line in a child process (TestMain), with an
// index in ix: a failure Pebble stops on leaves its database parked in the
// process, which must end for the next command to open the index.
func xffxProc(t *testing.T, ix string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(os.Args[0], append([]string{"--index", ix}, args...)...)
	cmd.Env = append(os.Environ(), "XFFIDX_TEST_CLI=1")
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// fillFS writes a file in dir until the file system has no byte free.
func fillFS(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{1 << 16, 1 << 12, 1} {
		chunk := make([]byte, size)
		for {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Bavail != 0 {
		t.Fatalf("file system not full: %d blocks free, %v", st.Bavail, err)
	}
}

// TestFullDisk: on a file system with no byte free (a small tmpfs: root
// only), build, prune and compact fail with one line naming the index and
// the system's error, exit 2, and the index is unchanged: it answers as
// before meanwhile, and once space is freed a build completes it.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		rnSkip(t, "mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=16m"); err != nil {
		rnSkip(t, "mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	caps := robustCaptures(t)
	ix := filepath.Join(mnt, "ix")
	if code, _, stderr := xffxProc(t, ix, "build", filepath.Join(caps, "xff_two_ips_small.pcap")); code != 0 {
		t.Fatalf("build: %d %s", code, stderr)
	}
	query := []string{"query", "--cidr", "0.0.0.0/0", "--cidr", "::/0", "--format", "json"}
	_, before, _ := xffxProc(t, ix, query...)
	if len(parseHits(t, before)) == 0 {
		t.Fatal("no hits before the disk is full")
	}
	fillFS(t, mnt)
	for _, args := range [][]string{{"build", caps}, {"prune"}, {"compact"}} {
		code, _, stderr := xffxProc(t, ix, args...)
		oneLineError(t, strings.Join(args, " "), code, stderr, "index "+ix+" could not be written (", "no space left on device", "the index keeps what was committed before")
		if code, out, stderr := xffxProc(t, ix, query...); code != 0 || out != before {
			t.Fatalf("after %s on a full disk, query: exit %d, %q, stderr %q; want the answers of before", args, code, out, stderr)
		}
	}
	os.Remove(filepath.Join(mnt, "filler"))
	if code, _, stderr := xffxProc(t, ix, "build", caps); code != 0 || !strings.Contains(stderr, "files: 5 new, 0 grown, 1 unchanged") {
		t.Fatalf("build once space is free: exit %d, %q", code, stderr)
	}
	clean := t.TempDir()
	xffx(t, clean, "build", caps)
	_, want, _ := xffx(t, clean, query...)
	if _, got, _ := xffxProc(t, ix, query...); got != want {
		t.Errorf("after the disk was full, the index differs from a clean build's:\n%s\nwant\n%s", got, want)
	}
}

// dbFiles lists the names in an index's database directory.
func dbFiles(t *testing.T, ix string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(ix, "db"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestDamagedDatabaseRefused: a database that lost its marker.manifest, or
// whose MANIFEST is cut short or gone, or one of whose tables is gone, is
// refused by build and by queries with one line naming the index, what is
// wrong and the way out (exit 2); no file of it is removed or replaced (an
// older xffidx made a new database over one without marker.manifest,
// deleting its tables). Only an absent or empty database directory becomes
// a new index, and a creation cut short leaves nothing a build minds.
func TestDamagedDatabaseRefused(t *testing.T) {
	caps, clean := robustCaptures(t), t.TempDir()
	if code, _, stderr := xffx(t, clean, "build", caps); code != 0 {
		t.Fatalf("build: %d %s", code, stderr)
	}
	query := []string{"query", "--cidr", "0.0.0.0/0", "--cidr", "::/0", "--format", "json"}
	_, want, _ := xffx(t, clean, query...)
	glob := func(ix, pattern string) []string {
		m, _ := filepath.Glob(filepath.Join(ix, "db", pattern))
		if len(m) == 0 {
			t.Fatalf("no %s in %s", pattern, ix)
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		damage func(ix string)
		want   []string
	}{
		{"marker.manifest removed", func(ix string) {
			for _, m := range glob(ix, "marker.manifest.*") {
				os.Remove(m)
			}
		}, []string{"marker.manifest", "is missing"}},
		{"MANIFEST cut short", func(ix string) {
			m := glob(ix, "marker.manifest.*")
			current := filepath.Join(ix, "db", strings.SplitN(filepath.Base(m[0]), ".", 4)[3])
			fi, err := os.Stat(current)
			if err != nil {
				t.Fatal(err)
			}
			os.Truncate(current, fi.Size()/3)
		}, []string{"malformed manifest"}},
		{"MANIFEST removed", func(ix string) {
			for _, m := range glob(ix, "MANIFEST-*") {
				os.Remove(m)
			}
		}, []string{"could not open manifest", "no such file"}},
		{"table removed", func(ix string) {
			os.Remove(glob(ix, "*.sst")[0])
		}, []string{"file does not exist"}},
		{"table cut short", func(ix string) {
			sst := glob(ix, "*.sst")[0]
			fi, _ := os.Stat(sst)
			os.Truncate(sst, fi.Size()-10)
		}, []string{"object size mismatch"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := t.TempDir()
			copyIndex(t, clean, ix)
			tc.damage(ix)
			before := dbFiles(t, ix)
			for _, args := range [][]string{{"build", caps}, {"files"}, query, {"prune"}, {"compact"}} {
				code, _, stderr := xffx(t, ix, args...)
				oneLineError(t, args[0], code, stderr, append([]string{"index " + ix + " is corrupt (", "xffidx build --rebuild"}, tc.want...)...)
			}
			if after := dbFiles(t, ix); !slices.Equal(before, after) {
				t.Errorf("the damaged database changed: %v, then %v", before, after)
			}
			if code, _, stderr := xffx(t, ix, "build", "--rebuild", caps); code != 0 {
				t.Fatalf("build --rebuild: exit %d, %s", code, stderr)
			}
			if _, got, _ := xffx(t, ix, query...); got != want {
				t.Errorf("after --rebuild: %s, want %s", got, want)
			}
		})
	}
	t.Run("empty or half made", func(t *testing.T) {
		ix := t.TempDir()
		os.Mkdir(filepath.Join(ix, "db"), 0o700)
		os.MkdirAll(filepath.Join(ix, "db.new-123", "sub"), 0o700) // a creation cut short
		if code, _, _ := xffx(t, ix, "files"); code != 2 {
			t.Errorf("files on an empty database directory: exit %d", code)
		}
		if code, _, stderr := xffx(t, ix, "build", caps); code != 0 || !strings.Contains(stderr, "files: 6 new") {
			t.Fatalf("build into an empty database directory: exit %d, %s", code, stderr)
		}
		if _, got, _ := xffx(t, ix, query...); got != want {
			t.Errorf("answers %s, want %s", got, want)
		}
		if m, _ := filepath.Glob(filepath.Join(ix, "db.new-*")); len(m) != 0 {
			t.Errorf("left over: %v", m)
		}
	})
}

// xffxAs runs the command line in a child process under umask (octal), or,
// with uid >= 0, as that user and group (setpriv: root only).
func xffxAs(t *testing.T, bin, umask string, uid, gid int, ix string, args ...string) (int, string, string) {
	t.Helper()
	argv := append([]string{bin, "--index", ix}, args...)
	if uid >= 0 {
		argv = append([]string{"setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", gid), "--clear-groups", "--"}, argv...)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "XFFIDX_TEST_CLI=1", "XFFIDX_TEST_UMASK="+umask)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// checkModes checks the mode of every directory and file of an index: dirs
// and files exactly, the group (if gid >= 0) of everything in its database.
func checkModes(t *testing.T, ix string, dirs, files os.FileMode, gid int) {
	t.Helper()
	n := 0
	filepath.WalkDir(ix, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		mode := fi.Mode() & (os.ModePerm | os.ModeSetgid)
		rel, _ := filepath.Rel(ix, p)
		switch {
		case rel == "build.lock" || rel == "tmp" || strings.HasPrefix(rel, "tmp/"):
			// The build's own: never more than the index's modes.
			if mode.Perm()&^dirs.Perm() != 0 {
				t.Errorf("%s: mode %v, more than %v", rel, mode, dirs)
			}
		case d.IsDir() && mode != dirs:
			t.Errorf("%s: mode %v, want %v", rel, mode, dirs)
		case !d.IsDir() && mode != files:
			t.Errorf("%s: mode %v, want %v", rel, mode, files)
		}
		if st := fi.Sys().(*syscall.Stat_t); gid >= 0 && (rel == "db" || strings.HasPrefix(rel, "db/")) && int(st.Gid) != gid {
			t.Errorf("%s: group %d, want %d", rel, st.Gid, gid)
		}
		n++
		return nil
	})
	if n < 8 {
		t.Errorf("only %d files and directories in %s", n, ix)
	}
}

// TestIndexPermissions: whatever the umask, the index is its owner's alone
// (directories 0700, files 0600), a database an older xffidx left open to
// others included; under a set-group-ID directory its group may read it
// (2750, 0640: the directory's group) and not write it. As root: a user of
// that group queries it with read access only (no write access to LOCK),
// and gets the owner's answers; a build by that user, and a query by a user
// outside a private index, fail with one line saying why.
func TestIndexPermissions(t *testing.T) {
	base, err := os.MkdirTemp("", "xffidx-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	// A copy of the test binary and the captures another user can reach.
	bin := filepath.Join(base, "xffidx.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	caps := filepath.Join(base, "caps")
	copyIndex(t, robustCaptures(t), caps)
	os.Chmod(caps, 0o755)
	query := []string{"query", "--cidr", "0.0.0.0/0", "--cidr", "::/0", "--format", "json"}
	build := func(ix, umask string) {
		t.Helper()
		for _, args := range [][]string{{"build", filepath.Join(caps, "xff_two_ips_small.pcap")}, {"build", caps}, {"compact"}} {
			if code, _, stderr := xffxAs(t, bin, umask, -1, -1, ix, args...); code != 0 {
				t.Fatalf("%s under umask %s: exit %d, %s", args, umask, code, stderr)
			}
		}
	}

	private := filepath.Join(base, "private")
	build(private, "000")
	checkModes(t, private, 0o700, 0o600, -1)
	_, want, _ := xffx(t, private, query...)
	if len(parseHits(t, want)) < 10 {
		t.Fatalf("too few hits: %q", want)
	}

	// An index an older xffidx made as umask 022 left it.
	old := filepath.Join(base, "old")
	copyIndex(t, private, old)
	filepath.WalkDir(old, func(p string, d os.DirEntry, err error) error {
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	if code, _, stderr := xffxAs(t, bin, "022", -1, -1, old, "build", caps); code != 0 {
		t.Fatalf("build of an old index: exit %d, %s", code, stderr)
	}
	if fi, err := os.Stat(filepath.Join(old, "db")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("an older xffidx's database after a build: %v %v, want 0700", fi.Mode(), err)
	}

	// A shared index: its directory set-group-ID, of a group with no other
	// member here (nogroup, as root).
	group, reader := os.Getgid(), -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			rnSkip(t, "no user nobody: %v", err)
		}
		reader, _ = strconv.Atoi(u.Uid)
		group, _ = strconv.Atoi(u.Gid)
	}
	shared := filepath.Join(base, "shared")
	if err := os.Mkdir(shared, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(shared, -1, group); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	build(shared, "077")
	checkModes(t, shared, 0o750|os.ModeSetgid, 0o640, group)
	if _, got, _ := xffx(t, shared, query...); got != want {
		t.Errorf("shared index answers %s, want %s", got, want)
	}

	// Without write access to any of its files (meaningful when not root).
	readOnly := filepath.Join(base, "read-only")
	copyIndex(t, shared, readOnly)
	filepath.WalkDir(readOnly, func(p string, d os.DirEntry, err error) error {
		if d.IsDir() {
			return nil
		}
		return os.Chmod(p, 0o440)
	})
	filepath.WalkDir(readOnly, func(p string, d os.DirEntry, err error) error {
		if d.IsDir() {
			return os.Chmod(p, 0o550)
		}
		return nil
	})
	t.Cleanup(func() {
		filepath.WalkDir(readOnly, func(p string, d os.DirEntry, err error) error {
			return os.Chmod(p, 0o700)
		})
	})
	if code, got, stderr := xffx(t, readOnly, query...); code != 0 || got != want {
		t.Errorf("query of an index without write access: exit %d, %s, stderr %q", code, got, stderr)
	}

	if reader < 0 {
		rnSkip(t, "querying as another user needs root")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		rnSkip(t, "no setpriv: %v", err)
	}
	code, got, stderr := xffxAs(t, bin, "022", reader, group, shared, query...)
	if code != 0 || got != want {
		t.Errorf("query by a reader of the group: exit %d, %s, stderr %q; want the owner's answers", code, got, stderr)
	}
	if code, _, stderr := xffxAs(t, bin, "022", reader, group, shared, "top"); code != 0 {
		t.Errorf("top by a reader of the group: exit %d, %q", code, stderr)
	}
	code, _, stderr = xffxAs(t, bin, "022", reader, group, shared, "build", caps)
	oneLineError(t, "build by a reader", code, stderr, "index "+shared+": permission denied (", "only its owner may write it")
	code, _, stderr = xffxAs(t, bin, "022", reader, group, private, query...)
	oneLineError(t, "query of a private index by another user", code, stderr, "index "+private+": permission denied (", "set-group-ID")
}
