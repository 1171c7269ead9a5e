package capgen

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// TsharkXFF runs tshark on a capture (one packet at a time: no TCP
// reassembly) and returns, per frame number, the X-Forwarded-For values
// it shows, trimmed of spaces and tabs as xffidx trims them. frames is the
// number of frames tshark read. It is the oracle of the differential tests
// of the hostile captures; exec.ErrNotFound (wrapped) when tshark is not
// installed.
func TsharkXFF(data []byte) (values map[int][]string, frames int, err error) {
	bin, err := exec.LookPath("tshark")
	if err != nil {
		return nil, 0, err
	}
	dir, err := os.MkdirTemp("", "capgen-tshark")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "c.pcap")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-r", path,
		"-o", "tcp.desegment_tcp_streams:FALSE", "-o", "tcp.analyze_sequence_numbers:FALSE",
		"-T", "fields", "-e", "frame.number", "-e", "http.x_forwarded_for",
		"-E", "occurrence=a", "-E", "aggregator=\x01")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, 0, fmt.Errorf("tshark: %w: %s", err, stderr.String())
	}
	values = map[int][]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		num, val, _ := strings.Cut(line, "\t")
		n, err := strconv.Atoi(num)
		if err != nil {
			return nil, 0, fmt.Errorf("tshark line %q", line)
		}
		frames = max(frames, n)
		if val == "" {
			continue
		}
		for _, v := range strings.Split(val, "\x01") {
			values[n] = append(values[n], strings.Trim(unescapeTshark(v), " \t"))
		}
	}
	return values, frames, nil
}

// unescapeTshark undoes the C escapes tshark's field output writes for
// some control bytes (\t, \f...) and backslashes; others it writes raw.
func unescapeTshark(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			if c := strings.IndexByte("abfnrtv", s[i]); c >= 0 {
				b.WriteByte("\a\b\f\n\r\t\v"[c])
			} else {
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
