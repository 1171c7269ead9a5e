package query

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestReadAddrList(t *testing.T) {
	list := "\xef\xbb\xbf# flagged by the firewall, 2026-01-02\r\n" +
		"203.0.113.7\r\n" +
		"\n" +
		"   198.51.100.9   # the NAT pool's first\n" +
		"\t2001:DB8:0:0::17\n" +
		"[2001:db8::18]\n" +
		"::ffff:192.0.2.1\n" +
		"10.1.2.3/8\n" +
		"fe80::1%eth0\n" +
		"#203.0.113.99\n" +
		"2001:db8::/32" // no final newline
	got, err := ReadAddrList(strings.NewReader(list), "flagged.txt", nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []netip.Prefix
	for _, s := range []string{"203.0.113.7/32", "198.51.100.9/32", "2001:db8::17/128", "2001:db8::18/128", "192.0.2.1/32", "10.0.0.0/8", "fe80::1/128", "2001:db8::/32"} {
		want = append(want, netip.MustParsePrefix(s))
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if got, err := ReadAddrList(strings.NewReader("# nothing\n\n"), "empty", nil); err != nil || len(got) != 0 {
		t.Errorf("comments only: %v, %v", got, err)
	}
}

func TestReadAddrListBadLines(t *testing.T) {
	list := "203.0.113.7\n# fine\n203.0.113.300\n198.51.100.9\nnot an address \x1b[31m\n2001:db8::/129\n" + strings.Repeat("1", 5000) + "\n192.0.2.1\n"
	_, err := ReadAddrList(strings.NewReader(list), "feed.txt", nil)
	var bad *BadLine
	if !errors.As(err, &bad) || bad.Line != 3 || bad.Name != "feed.txt" || !strings.HasPrefix(err.Error(), "feed.txt:3: ") || !strings.Contains(err.Error(), "203.0.113.300") {
		t.Fatalf("first bad line: %v", err)
	}
	var skipped []int
	got, err := ReadAddrList(strings.NewReader(list), "feed.txt", func(b *BadLine) error {
		skipped = append(skipped, b.Line)
		if len(b.Text) > 64 {
			t.Errorf("line %d: %d bytes of text kept", b.Line, len(b.Text))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(skipped, []int{3, 5, 6, 7}) {
		t.Errorf("skipped lines %v, want 3 5 6 7", skipped)
	}
	want := []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32"), netip.MustParsePrefix("198.51.100.9/32"), netip.MustParsePrefix("192.0.2.1/32")}
	if !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	stop := errors.New("stop")
	if _, err := ReadAddrList(strings.NewReader(list), "feed.txt", func(*BadLine) error { return stop }); err != stop {
		t.Errorf("skip's error: %v", err)
	}
	// Binary bytes: bad lines, never a panic or a huge message.
	_, err = ReadAddrList(strings.NewReader("\x00\xff\xfe\x01\n"), "bin", nil)
	if !errors.As(err, &bad) || bad.Line != 1 || len(err.Error()) > 200 {
		t.Errorf("binary: %v", err)
	}
}
