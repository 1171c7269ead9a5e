package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestManPages generates the man pages as a packager does (go run -tags
// man ./cmd/xffidx man DIR) and checks that every command a user can run
// has its page, naming it, and that no page is left over.
func TestManPages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain on PATH")
	}
	dir := t.TempDir()
	if out, err := exec.Command(gobin, "run", "-tags", "man", ".", "man", dir).CombinedOutput(); err != nil {
		t.Fatalf("go run -tags man . man: %v\n%s", err, out)
	}
	want := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() {
			return
		}
		want[strings.ReplaceAll(c.CommandPath(), " ", "-")+".1"] = true
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	root := newRoot(io.Discard, io.Discard)
	root.InitDefaultCompletionCmd()
	walk(root)
	for _, name := range []string{"xffidx.1", "xffidx-query.1", "xffidx-top.1", "xffidx-version.1", "xffidx-completion-bash.1"} {
		if !want[name] {
			t.Fatalf("the command tree has no %s: %v", name, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	got := map[string]bool{}
	for _, e := range entries {
		got[e.Name()] = true
	}
	for name := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("no man page for %s", strings.TrimSuffix(name, ".1"))
			continue
		}
		cmd := strings.TrimSuffix(name, ".1") + " - "
		if !bytes.HasPrefix(b, []byte(`.nh`)) || !bytes.Contains(b, []byte(".TH \"XFFIDX\" \"1\"")) || !bytes.Contains(b, []byte(cmd)) {
			t.Errorf("%s does not look like the man page of its command:\n%.300s", name, b)
		}
	}
	for name := range got {
		if !want[name] {
			t.Errorf("man page %s of no command", name)
		}
	}
}

// TestCompletionScripts: xffidx completion writes the bash, zsh and fish
// scripts README tells users to install.
func TestCompletionScripts(t *testing.T) {
	ix := t.TempDir()
	for shell, mark := range map[string]string{"bash": "__start_xffidx", "zsh": "#compdef xffidx", "fish": "complete -c xffidx"} {
		code, out, stderr := xffx(t, ix, "completion", shell)
		if code != 0 || !strings.Contains(out, mark) {
			t.Errorf("completion %s: exit %d, %d bytes without %q: %s", shell, code, len(out), mark, stderr)
		}
	}
}
