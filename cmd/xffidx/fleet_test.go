package main

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xffidx/xffidx/fleet/pgtest"
)

// TestPublishAndQueryDB: the command line of the fleet: publish says what
// it sent, and that a second one sends nothing; query --db gives the local
// rows with their sensor, exits as grep does, narrows with --sensor,
// refuses --write and --client-only with the way to go; and a password in
// the URL never appears in a message.
func TestPublishAndQueryDB(t *testing.T) {
	db := pgtest.Start(t)
	ix := t.TempDir()
	if code, _, stderr := xffx(t, ix, "build", corpus+"xff_erspan_gre_mixed.pcap"); code != 0 {
		t.Fatal(stderr)
	}
	code, _, stderr := xffx(t, ix, "publish", "--db", db, "--sensor", "s1")
	if code != 0 || !strings.Contains(stderr, "sensor s1: 1 new") {
		t.Fatalf("publish: exit %d, %q", code, stderr)
	}
	if code, _, stderr = xffx(t, ix, "publish", "--db", db, "--sensor", "s1"); code != 0 || !strings.Contains(stderr, "nothing to send") {
		t.Fatalf("second publish: exit %d, %q", code, stderr)
	}
	_, local, _ := xffx(t, ix, "query", "--ip", "106.113.55.163", "--format", "json")
	code, central, stderr := xffx(t, t.TempDir(), "query", "--db", db, "--ip", "106.113.55.163", "--format", "json")
	if code != 0 || strings.Count(central, `"sensor":"s1"`) != 2 || strings.ReplaceAll(central, `,"sensor":"s1"`, "") != local {
		t.Fatalf("query --db: exit %d, %q\n%s\nwant the local rows with their sensor:\n%s", code, stderr, central, local)
	}
	_, localFlows, _ := xffx(t, ix, "query", "--cidr", "0.0.0.0/0", "--flows", "--format", "json")
	code, centralFlows, stderr := xffx(t, t.TempDir(), "query", "--db", db, "--cidr", "0.0.0.0/0", "--flows", "--format", "json")
	if code != 0 || localFlows == "" || strings.ReplaceAll(centralFlows, `,"sensor":"s1"`, "") != localFlows {
		t.Fatalf("query --db --flows: exit %d, %q\n%s\nwant the local flows with their sensor:\n%s", code, stderr, centralFlows, localFlows)
	}
	_, localFilter, _ := xffx(t, ix, "query", "--ip", "106.113.55.163", "--wireshark-filter")
	if _, centralFilter, _ := xffx(t, ix, "query", "--db", db, "--ip", "106.113.55.163", "--wireshark-filter"); centralFilter != localFilter || localFilter == "" {
		t.Errorf("query --db --wireshark-filter: %q, want %q", centralFilter, localFilter)
	}
	// Several prefixes, overlapping: each row once, in the local order.
	multi := []string{"--cidr", "106.0.0.0/8", "--ip", "106.113.55.163", "--cidr", "0.0.0.0/1", "--header", "all", "--format", "json"}
	_, localMulti, _ := xffx(t, ix, append([]string{"query"}, multi...)...)
	code, centralMulti, stderr := xffx(t, t.TempDir(), append([]string{"query", "--db", db}, multi...)...)
	if code != 0 || strings.Count(localMulti, "\n") < 3 || strings.ReplaceAll(centralMulti, `,"sensor":"s1"`, "") != localMulti {
		t.Fatalf("query --db %v: exit %d, %q\n%s\nwant the local rows with their sensor:\n%s", multi, code, stderr, centralMulti, localMulti)
	}
	for _, args := range [][]string{{"--n", "5"}, {"--n", "3", "--header", "all"}, {"--n", "4", "--from", "2020-12-24T13:04:24.5728Z"}, {"--n", "5", "--file", "xff_erspan*"}} {
		_, localTop, _ := xffx(t, ix, append([]string{"top", "--format", "json"}, args...)...)
		code, centralTop, stderr := xffx(t, t.TempDir(), append([]string{"top", "--db", db, "--format", "json"}, args...)...)
		if code != 0 || localTop == "" || centralTop != localTop {
			t.Errorf("top --db %v: exit %d, %q\n%s\nwant the local top:\n%s", args, code, stderr, centralTop, localTop)
		}
	}
	// An address list: query and top across the sensors as locally.
	list := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(list, []byte("# flagged\n106.113.55.163\n111.202.11.94\n192.0.2.1\n106.0.0.0/8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"query", "--header", "all"}, {"top", "--header", "all"}} {
		args := append(cmd, "--ip-file", list, "--format", "json")
		_, local, _ := xffx(t, ix, args...)
		code, central, stderr := xffx(t, t.TempDir(), append(args, "--db", db)...)
		if code != 0 || strings.Count(local, "\n") < 2 || strings.ReplaceAll(central, `,"sensor":"s1"`, "") != local {
			t.Errorf("%s --ip-file --db: exit %d, %q\n%s\nwant the local answer:\n%s", cmd[0], code, stderr, central, local)
		}
	}
	if code, out, _ := xffx(t, ix, "top", "--db", db, "--file", "no-such-capture*"); code != 1 || out != "" {
		t.Errorf("top --db --file matching nothing: exit %d, %q; want 1 and nothing", code, out)
	}
	if code, out, _ := xffx(t, ix, "query", "--db", db, "--ip", "106.113.55.163", "--sensor", "other"); code != 1 || out != "" {
		t.Errorf("query --db --sensor other: exit %d, %q; want 1 and nothing", code, out)
	}
	if code, _, _ := xffx(t, ix, "query", "--db", db, "--ip", "192.0.2.1"); code != 1 {
		t.Errorf("query --db for an absent address: exit %d, want 1", code)
	}
	for _, args := range [][]string{{"--write", t.TempDir() + "/w.pcap"}, {"--client-only"}} {
		code, _, stderr := xffx(t, ix, append([]string{"query", "--db", db, "--ip", "106.113.55.163"}, args...)...)
		if code != 2 || !strings.Contains(stderr, "stay on the sensors") {
			t.Errorf("query --db %v: exit %d, %q", args, code, stderr)
		}
	}
	// A wrong password for a user that does not exist: the error names
	// neither the password nor the URL's.
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("nobody-here", "Sup3rS3cret")
	for _, cmd := range [][]string{{"publish", "--db", u.String(), "--sensor", "s1"}, {"query", "--db", u.String(), "--ip", "10.0.0.1"}} {
		code, out, stderr := xffx(t, ix, cmd...)
		if code != 2 || strings.Contains(stderr+out, "Sup3rS3cret") {
			t.Errorf("%s with a bad user: exit %d, %q", cmd[0], code, stderr)
		}
	}
}
