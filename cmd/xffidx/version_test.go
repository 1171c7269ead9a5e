package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/index"
)

// TestVersionCommandAndFlag: `xffidx version` and `xffidx --version` print
// the same lines, with the Go version and the index schema.
func TestVersionCommandAndFlag(t *testing.T) {
	ix := t.TempDir()
	code, cmdOut, stderr := xffx(t, ix, "version")
	if code != 0 || stderr != "" {
		t.Fatalf("version: exit %d, stderr %q", code, stderr)
	}
	code, flagOut, stderr := xffx(t, ix, "--version")
	if code != 0 || stderr != "" {
		t.Fatalf("--version: exit %d, stderr %q", code, stderr)
	}
	if cmdOut != flagOut {
		t.Errorf("version says\n%s--version says\n%s", cmdOut, flagOut)
	}
	for _, want := range []string{"xffidx ", "\ngo: " + runtime.Version() + " ", "\nindex schema: " + index.SchemaVersion + "\n"} {
		if !strings.Contains(cmdOut, want) {
			t.Errorf("version output lacks %q:\n%s", want, cmdOut)
		}
	}
}

// TestVersionText reads a build's stamped settings: version, revision,
// time and the dirty flag.
func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/xffidx/xffidx", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-01-02T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		}}
	got := versionText(bi, true)
	for _, want := range []string{
		"xffidx v1.4.0\n",
		"revision: 0123456789abcdef0123456789abcdef01234567 (2026-01-02T10:00:00Z), with uncommitted changes\n",
		"go: go1.99.1 ",
		"index schema: " + index.SchemaVersion + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
	bi.Settings[3].Value = "false"
	if got := versionText(bi, true); strings.Contains(got, "uncommitted") {
		t.Errorf("a clean tree reported as modified:\n%s", got)
	}
	if got := versionText(nil, false); !strings.Contains(got, "revision: unknown") || !strings.Contains(got, "go: "+runtime.Version()) {
		t.Errorf("without build info:\n%s", got)
	}
}

// TestVersionOfBuiltBinary builds xffidx as a user would and checks that
// `xffidx version` says what the Go toolchain recorded in that binary
// (`go version -m`): module version, revision and dirty flag.
func TestVersionOfBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain on PATH")
	}
	bin := filepath.Join(t.TempDir(), "xffidx")
	// -buildvcs=auto: stamped from git when the tree is a git checkout.
	build := exec.Command(gobin, "build", "-buildvcs=auto", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("xffidx version: %v", err)
	}
	meta, err := exec.Command(gobin, "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	var version, revision, modified string
	for _, line := range strings.Split(string(meta), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			version = f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			revision = strings.TrimPrefix(f[1], "vcs.revision=")
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.modified="):
			modified = strings.TrimPrefix(f[1], "vcs.modified=")
		}
	}
	got := string(out)
	if !strings.HasPrefix(got, "xffidx "+version+"\n") {
		t.Errorf("go version -m says module version %q; xffidx version says\n%s", version, got)
	}
	if revision == "" {
		if !strings.Contains(got, "revision: unknown") {
			t.Errorf("no revision recorded, yet xffidx version says\n%s", got)
		}
		t.Logf("built without VCS information (not a git checkout, or -buildvcs=false): %q", bytes.TrimSpace(out))
		return
	}
	if !strings.Contains(got, "revision: "+revision) || strings.Contains(got, "uncommitted") != (modified == "true") {
		t.Errorf("go version -m says revision %s modified %s; xffidx version says\n%s", revision, modified, got)
	}
}
