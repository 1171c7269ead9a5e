// Command capgen writes a deterministic synthetic capture of
// proxy-to-backend HTTP traffic (see package format/capgen), and
// optionally the truth an exact X-Forwarded-For indexer must find in it.
//
//	capgen -seed 1 -format pcap -link 1 -size 4G -xff-rate 0.02 -o big.pcap
//	capgen -variants -tunnels -ipv6 -format pcapng-multi -size 2M -o v.pcapng -truth v.json
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xffidx/xffidx/format/capgen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "capgen:") {
			msg = "capgen: " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(2)
	}
}

// parseSize reads a byte count with an optional K, M, G or T suffix
// (powers of 1024; "KB", "KiB" and so on are accepted too).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	if t == "" {
		return 0, fmt.Errorf("bad size %q", s)
	}
	if v, err := strconv.ParseInt(t, 10, 64); err == nil && v >= 0 {
		return v * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(f * float64(mult)), nil
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("capgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg capgen.Config
	var link uint
	var size, out, truth string
	var snap uint
	fs.Int64Var(&cfg.Seed, "seed", 1, "PRNG seed (same seed and flags give the same bytes)")
	fs.StringVar(&cfg.Format, "format", "pcap", "pcap, pcap-ns, pcap-be, pcapng or pcapng-multi")
	fs.UintVar(&link, "link", 1, "link type: 1 Ethernet, 113 SLL, 276 SLL2, 101 raw IP, 0 BSD NULL")
	fs.BoolVar(&cfg.VLAN, "vlan", false, "802.1Q tag on Ethernet frames")
	fs.BoolVar(&cfg.QinQ, "qinq", false, "802.1ad+802.1Q tags on Ethernet frames")
	fs.StringVar(&size, "size", "64M", "approximate output size (K/M/G/T suffixes, powers of 1024)")
	fs.Float64Var(&cfg.XFFRate, "xff-rate", 0.02, "fraction of packets that are requests carrying X-Forwarded-For")
	fs.BoolVar(&cfg.IPv6Transport, "ipv6", false, "some connections over IPv6")
	fs.UintVar(&snap, "snaplen", 0, "snap length (0 = 65535)")
	fs.BoolVar(&cfg.Variants, "variants", false, "include every XFF variant, split and decoy")
	fs.BoolVar(&cfg.Tunnels, "tunnels", false, "wrap some connections in GRE, ERSPAN, VXLAN, Geneve")
	fs.BoolVar(&cfg.TruncateLast, "truncate-last", false, "end the file inside its last record")
	fs.StringVar(&out, "o", "-", "output file (- for standard output)")
	fs.StringVar(&truth, "truth", "", "write the truth (hits, packet and byte counts) as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	n, err := parseSize(size)
	if err != nil {
		return err
	}
	cfg.TargetBytes = n
	cfg.LinkType = uint32(link)
	cfg.SnapLen = uint32(snap)
	cfg.NoTruth = truth == ""

	var w io.Writer = stdout
	var f *os.File
	if out != "-" && out != "" {
		if f, err = os.Create(out); err != nil {
			return err
		}
		w = f
	}
	t0 := time.Now()
	tr, err := capgen.Write(w, cfg)
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	el := time.Since(t0)
	fmt.Fprintf(stderr, "capgen: %d bytes, %d packets, %d hits in %v (%.0f MB/s)\n",
		tr.Bytes, tr.Packets, len(tr.Hits), el.Round(time.Millisecond), float64(tr.Bytes)/1e6/el.Seconds())
	if truth != "" {
		tf, err := os.Create(truth)
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(tf)
		enc := json.NewEncoder(bw)
		enc.SetIndent("", " ")
		err = enc.Encode(tr)
		err = errors.Join(err, bw.Flush(), tf.Close())
		if err != nil {
			return err
		}
	}
	return nil
}
