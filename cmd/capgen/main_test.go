package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
)

// TestRun checks that the command writes what the library writes, with its
// truth as JSON, in the bulk mode with big cookies and in the busy mode.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args  []string
		write func() ([]byte, any)
	}{
		{[]string{"-seed", "3", "-size", "1M", "-cookie-rate", "0.5", "-cookie-max", "12K"}, func() ([]byte, any) {
			var buf bytes.Buffer
			tr, err := capgen.Write(&buf, capgen.Config{Seed: 3, Format: "pcap", LinkType: 1, TargetBytes: 1 << 20, XFFRate: 0.02,
				CookieRate: 0.5, CookieMin: 1 << 10, CookieMax: 12 << 10})
			if err != nil {
				t.Fatal(err)
			}
			return buf.Bytes(), tr
		}},
		{[]string{"-busy", "-seed", "4", "-size", "1M", "-conns", "100", "-gap-rate", "0.02", "-ipv6-rate", "-1"}, func() ([]byte, any) {
			var buf bytes.Buffer
			tr, err := capgen.WriteBusy(&buf, capgen.BusyConfig{Seed: 4, Format: "pcap", LinkType: 1, TargetBytes: 1 << 20,
				Conns: 100, GapRate: 0.02, IPv6Rate: -1, CookieMin: 1 << 10, CookieMax: 16 << 10})
			if err != nil {
				t.Fatal(err)
			}
			return buf.Bytes(), tr
		}},
	} {
		out, tj := filepath.Join(dir, "out.pcap"), filepath.Join(dir, "truth.json")
		var stderr bytes.Buffer
		if err := run(append(c.args, "-o", out, "-truth", tj), &bytes.Buffer{}, &stderr); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		t.Logf("%v: %s", c.args, stderr.String())
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		want, tr := c.write()
		if !bytes.Equal(got, want) {
			t.Errorf("%v: the capture differs from the library's", c.args)
		}
		js, err := os.ReadFile(tj)
		if err != nil {
			t.Fatal(err)
		}
		wantJS, _ := json.MarshalIndent(tr, "", " ")
		if !bytes.Equal(bytes.TrimSpace(js), wantJS) {
			t.Errorf("%v: the truth JSON differs from the library's", c.args)
		}
		var back capgen.BusyTruth
		if err := json.Unmarshal(js, &back); err != nil {
			t.Errorf("%v: %v", c.args, err)
		}
	}
	if err := run([]string{"-busy", "-format", "pcapng-multi", "-o", filepath.Join(dir, "x")}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Errorf("-busy -format pcapng-multi: no error")
	}
}
