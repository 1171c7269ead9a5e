// Command capgen writes a deterministic synthetic capture of
// proxy-to-backend HTTP traffic (see package format/capgen), and
// optionally the truth an exact X-Forwarded-For indexer must find in it.
//
//	capgen -seed 1 -format pcap -link 1 -size 4G -xff-rate 0.02 -o big.pcap
//	capgen -seed 42 -size 4G -cookie-rate 0.08 -cookie-max 12K -o bench.pcap -truth bench.json
//	capgen -variants -tunnels -ipv6 -format pcapng-multi -size 2M -o v.pcapng -truth v.json
//
// With -busy it writes the busy-link mode instead (capgen.WriteBusy):
// thousands of interleaved keep-alive connections with big header blocks,
// pipelining, bodies, decoys, retransmissions, reordering and capture gaps;
// -truth then writes a capgen.BusyTruth.
//
//	capgen -busy -seed 1 -size 8M -conns 5000 -o busy.pcap -truth busy.json
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
	var bc capgen.BusyConfig
	var link uint
	var size, out, truth, cookieMin, cookieMax string
	var snap uint
	var busy bool
	fs.Int64Var(&cfg.Seed, "seed", 1, "PRNG seed (same seed and flags give the same bytes)")
	fs.StringVar(&cfg.Format, "format", "pcap", "pcap, pcap-ns, pcap-be, pcapng or pcapng-multi (not with -busy)")
	fs.UintVar(&link, "link", 1, "link type: 1 Ethernet, 113 SLL, 276 SLL2, 101 raw IP, 0 BSD NULL (not with -busy)")
	fs.BoolVar(&cfg.VLAN, "vlan", false, "802.1Q tag on Ethernet frames")
	fs.BoolVar(&cfg.QinQ, "qinq", false, "802.1ad+802.1Q tags on Ethernet frames")
	fs.StringVar(&size, "size", "64M", "approximate output size (K/M/G/T suffixes, powers of 1024)")
	fs.Float64Var(&cfg.XFFRate, "xff-rate", 0.02, "fraction of packets that are requests carrying X-Forwarded-For")
	fs.BoolVar(&cfg.IPv6Transport, "ipv6", false, "some connections over IPv6")
	fs.UintVar(&snap, "snaplen", 0, "snap length (0 = 65535)")
	fs.BoolVar(&cfg.Variants, "variants", false, "include every XFF variant, split and decoy")
	fs.BoolVar(&cfg.Tunnels, "tunnels", false, "wrap some connections in GRE, ERSPAN, VXLAN, Geneve")
	fs.BoolVar(&cfg.TruncateLast, "truncate-last", false, "end the file inside its last record")
	fs.Float64Var(&cfg.CookieRate, "cookie-rate", 0, "share of requests with a big Cookie header, making header blocks of several segments (bulk: 0 none; -busy: 0 means 0.1, negative none)")
	fs.StringVar(&cookieMin, "cookie-min", "1K", "smallest big Cookie header value (K suffix allowed)")
	fs.StringVar(&cookieMax, "cookie-max", "16K", "largest big Cookie header value (at most 64K)")
	fs.StringVar(&out, "o", "-", "output file (- for standard output)")
	fs.StringVar(&truth, "truth", "", "write the truth (hits, packet and byte counts) as JSON to this file")

	fs.BoolVar(&busy, "busy", false, "busy-link mode: many interleaved keep-alive connections, big header blocks, TCP misbehaviour (flags below; rates: 0 means the default, negative none)")
	fs.IntVar(&bc.Conns, "conns", 0, "-busy: connections open at once (0 = 5000, at most 20000)")
	fs.IntVar(&bc.Requests, "requests", 0, "-busy: mean requests per connection (0 = 4)")
	fs.Float64Var(&bc.PreOpenRate, "preopen-rate", 0, "-busy: share of the first connections already open at the start (default 0.1)")
	fs.Float64Var(&bc.RSTRate, "rst-rate", 0, "-busy: share of connections closed by a RST (default 0.1)")
	fs.Float64Var(&bc.ReuseRate, "reuse-rate", 0, "-busy: share of connections reusing a closed connection's 5-tuple (default 0.05)")
	fs.Float64Var(&bc.IPv6Rate, "ipv6-rate", 0, "-busy: share of connections over IPv6 (default 0.3)")
	fs.Float64Var(&bc.FwdRate, "fwd-rate", 0, "-busy: share of requests with forwarding headers (default 0.85)")
	fs.Float64Var(&bc.SplitRate, "split-rate", 0, "-busy: share of forwarding requests with a segment boundary at a chosen place of a forwarding line (default 0.2)")
	fs.Float64Var(&bc.PipelineRate, "pipeline-rate", 0, "-busy: share of pipelined request batches (default 0.1)")
	fs.Float64Var(&bc.BodyRate, "body-rate", 0, "-busy: share of requests with a body (default 0.3)")
	fs.Float64Var(&bc.ChunkedRate, "chunked-rate", 0, "-busy: share of bodies sent chunked (default 0.4)")
	fs.Float64Var(&bc.DecoyRate, "decoy-rate", 0, "-busy: share of requests, bodies and responses with decoy forwarding header text (default 0.2)")
	fs.Float64Var(&bc.RetransRate, "retrans-rate", 0, "-busy: client segments retransmitted later (default 0.01)")
	fs.Float64Var(&bc.DupRate, "dup-rate", 0, "-busy: client frames duplicated back to back (default 0.005)")
	fs.Float64Var(&bc.ReorderRate, "reorder-rate", 0, "-busy: client segments written after a later one (default 0.01)")
	fs.Float64Var(&bc.GapRate, "gap-rate", 0, "-busy: client segments missing from the capture (default 0.002)")
	fs.IntVar(&bc.MSS, "mss", 0, "-busy: client MSS (0 = 1460 or 1448 per connection, 20 less over IPv6)")
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
	cmin, err := parseSize(cookieMin)
	if err != nil {
		return err
	}
	cmax, err := parseSize(cookieMax)
	if err != nil {
		return err
	}
	cfg.TargetBytes = n
	cfg.LinkType = uint32(link)
	cfg.SnapLen = uint32(snap)
	cfg.NoTruth = truth == ""
	cfg.CookieMin, cfg.CookieMax = int(min(cmin, 1<<30)), int(min(cmax, 1<<30))

	var w io.Writer = stdout
	var f *os.File
	if out != "-" && out != "" {
		if f, err = os.Create(out); err != nil {
			return err
		}
		w = f
	}
	t0 := time.Now()
	var tr any
	var summary string
	if busy {
		bc.Seed, bc.Format, bc.LinkType, bc.VLAN = cfg.Seed, cfg.Format, cfg.LinkType, cfg.VLAN
		bc.TargetBytes, bc.NoTruth = cfg.TargetBytes, cfg.NoTruth
		bc.CookieRate, bc.CookieMin, bc.CookieMax = cfg.CookieRate, cfg.CookieMin, cfg.CookieMax
		var bt capgen.BusyTruth
		bt, err = capgen.WriteBusy(w, bc)
		tr = bt
		summary = fmt.Sprintf("%d bytes, %d packets, %d connections (%d open at most), %d requests (+%d gap-affected), %d hits (+%d gap-affected), %d gaps, %d retransmissions, %d duplicates, %d reordered",
			bt.Bytes, bt.Packets, bt.Conns, bt.MaxOpen, bt.Requests, bt.GapRequests, len(bt.Hits), len(bt.GapHits), bt.Gaps, bt.Retrans, bt.Dups, bt.Reordered)
	} else {
		var t capgen.Truth
		t, err = capgen.Write(w, cfg)
		tr = t
		summary = fmt.Sprintf("%d bytes, %d packets, %d hits", t.Bytes, t.Packets, len(t.Hits))
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	el := time.Since(t0)
	var bytes int64
	switch t := tr.(type) {
	case capgen.Truth:
		bytes = t.Bytes
	case capgen.BusyTruth:
		bytes = t.Bytes
	}
	fmt.Fprintf(stderr, "capgen: %s in %v (%.0f MB/s)\n", summary, el.Round(time.Millisecond), float64(bytes)/1e6/el.Seconds())
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
