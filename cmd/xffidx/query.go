package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/xffidx/xffidx/fleet"
	"github.com/xffidx/xffidx/query"
)

func newQuery(g *globals) *cobra.Command {
	var ips, cidrs, ipFiles, files, trusted, headers []string
	var from, to, outFormat string
	var flows, wsFilter, clientOnly, force, keepGoing bool
	var writeOut, db string
	var sensors []string
	cmd := &cobra.Command{
		Use:   "query (--ip ADDR | --cidr PREFIX | --ip-file FILE)... [flags]",
		Short: "Print the connections whose X-Forwarded-For values held an address",
		Long: `Print one row per packet whose X-Forwarded-For values hold ADDR (at any
position in the list), or any address in PREFIX, with its innermost TCP
5-tuple, timestamp and the request that carried the header, reading only
those packet records. --ip and --cidr may be repeated and combined; a packet
is reported once per matching address even where prefixes overlap.

--ip-file FILE reads a list of addresses and prefixes, one a line (a
firewall's export, a threat feed, a NAT pool; - reads stdin): blank lines
and # comments are allowed. A line that is neither an address nor a CIDR
prefix stops the query before it starts, with exit status 2 and the line's
number; with --keep-going each such line is skipped with a warning instead,
and the exit status is the answer's. The list is one question: the index is
opened once and each capture read once in offset order, each packet once
however many listed addresses it holds. Each row's xff_ip (CLIENT column)
is the listed address that matched: a packet holding two listed addresses
gives a row for each, as two --ip flags would.

Formats: table (the default on a terminal), json (the default otherwise; NDJSON,
one object per hit: xff_ip, xff, file, offset, ts, src_ip, src_port, dst_ip,
dst_port, proto, method, host, path), csv (RFC 4180 with a header row).
method, host and path are the request line and Host header of the request
that carried the XFF line; they are empty for a packet that continues a
header block begun in an earlier TCP segment.

The build indexes the other headers that carry a client address too:
Forwarded (RFC 7239: the for= node of each element), X-Real-IP,
True-Client-IP and CF-Connecting-IP. --header NAME (repeatable) or
--header all searches those instead of X-Forwarded-For alone; each row then
names its header (a "header" JSON field, a HEADER column) and a packet is
reported once per matching address and header.

--flows prints one row per connection instead (json: src_ip, src_port,
dst_ip, dst_port, proto, first_ts, last_ts, hits, files, xff_ips).
--wireshark-filter prints only a display filter selecting every packet of
those connections, for wireshark -Y or tshark -Y.

--write OUT writes those connections' packets as a capture. OUT is written
to a temporary file in its directory and renamed into place when complete,
readable by its owner alone (0600). An existing OUT is replaced only with
--force; a symbolic link at OUT, or a capture in the index (by device and
inode: a hard link too), is never written to.

--from and --to are inclusive and compare the packet's timestamp. Captures
whose indexed time span lies outside the window, or that no --file glob
matches, are not read at all. A packet without a timestamp (a pcapng simple
packet block) is kept when its capture's span overlaps the window. A flow is
a 5-tuple: a connection whose ports were reused later counts as one.

--client-only keeps a hit only when ADDR is the right-most entry of its
request's list (all lines of the hit's header in the request, in order) that
is not in a --trusted-proxy range: the address the last trusted proxy saw
the connection come from. Entries left of it can be written by anyone. Only
the list counts, not the packet's own source address; a non-address entry
("unknown") as the right-most untrusted one matches nothing. A header block
that goes on in later TCP segments is followed there (as the build does); a
hit whose list cannot be read whole is left out and counted on stderr.

Exit status, as grep's: 0 hits found, 1 none, 2 error (including a capture that
vanished or changed since it was indexed; its hits are reported, not decoded).`,
		Example: `  xffidx query --ip 203.0.113.7
  xffidx query --ip-file flagged.txt --format csv
  grep -v '^10\.' feed.txt | xffidx query --ip-file - --keep-going --flows
  xffidx query --cidr 203.0.113.0/24 --cidr 2001:db8::/32 --from -2h --flows
  xffidx query --ip 203.0.113.7 --file 'edge-*.pcap' --from 2026-01-02T10:00:00Z --to 2026-01-02T11:00:00Z
  tshark -r edge-1.pcap -Y "$(xffidx query --ip 203.0.113.7 --wireshark-filter)"
  xffidx query --ip 203.0.113.7 --client-only --trusted-proxy 10.0.0.0/8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fail := func(err error) error { return &exitError{code: exitTrouble, err: fmt.Errorf("query: %w", err)} }
			if len(ips) == 0 && len(cidrs) == 0 && len(ipFiles) == 0 {
				return fail(errors.New("--ip ADDR, --cidr PREFIX or --ip-file FILE is required"))
			}
			if keepGoing && len(ipFiles) == 0 {
				return fail(errors.New("--keep-going applies only with --ip-file"))
			}
			opt := query.Options{Files: files, ClientOnly: clientOnly}
			var err error
			if opt.Headers, err = query.ParseHeaders(headers); err != nil {
				return fail(fmt.Errorf("--header: %v", err))
			}
			for _, s := range ips {
				a, err := query.ParseAddr(s)
				if err != nil {
					return fail(fmt.Errorf("--ip %q: not an IP address", s))
				}
				opt.Prefixes = append(opt.Prefixes, netip.PrefixFrom(a, a.BitLen()))
			}
			for _, s := range cidrs {
				p, err := query.ParsePrefix(s)
				if err != nil {
					return fail(fmt.Errorf("--cidr %q: %v", s, err))
				}
				opt.Prefixes = append(opt.Prefixes, p)
			}
			listed, err := readIPFiles(g, cmd.InOrStdin(), ipFiles, keepGoing)
			if err != nil {
				return fail(err)
			}
			opt.Prefixes = append(opt.Prefixes, listed...)
			if len(trusted) > 0 && !clientOnly {
				return fail(errors.New("--trusted-proxy applies only with --client-only"))
			}
			for _, s := range trusted {
				p, err := query.ParsePrefix(s)
				if err != nil {
					return fail(fmt.Errorf("--trusted-proxy %q: %v", s, err))
				}
				opt.Trusted = append(opt.Trusted, p)
			}
			if opt.From, opt.To, err = parseWindow(from, to); err != nil {
				return fail(err)
			}
			if err := opt.Validate(); err != nil {
				return fail(err)
			}
			if wsFilter && outFormat != "" {
				return fail(errors.New("--wireshark-filter prints a display filter: it takes no --format"))
			}
			if force && writeOut == "" {
				return fail(errors.New("--force applies only with --write"))
			}
			if outFormat, err = checkFormat(g, outFormat); err != nil {
				return fail(err)
			}

			if db != "" {
				return queryFleet(g, db, sensors, opt, outFormat, len(headers) > 0, writeOut != "" || clientOnly, flows, wsFilter)
			}
			if len(sensors) > 0 {
				return fail(errors.New("--sensor applies only with --db"))
			}
			store, err := g.store()
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			// Rows and flows stream out as the packets are read; --write
			// writes the capture once the search is done.
			opt.Counts = g.searchCounts()
			var sum query.Summary
			switch {
			case writeOut != "":
				var st query.ExportStats
				if sum, st, err = query.SearchExport(store, opt, writeOut, force); err == nil && sum.Matched > 0 {
					fmt.Fprintf(g.stderr, "xffidx: wrote %d packets of %d conversations to %s\n", st.Packets, st.Conversations, safe(writeOut))
					if st.Partial > 0 {
						fmt.Fprintf(g.stderr, "xffidx: note: %d conversations were not found whole (open longer than the capture, or than 256 MB of it, around their hits)\n", st.Partial)
					}
				}
			case wsFilter || flows:
				format := outFormat
				if wsFilter {
					format = query.FormatFilter
				}
				var w *query.FlowWriter
				if w, err = query.NewFlowWriter(g.stdout, format); err == nil {
					sum, err = query.SearchFlows(store, opt, w.Write)
					err = errors.Join(err, w.Close())
				}
			default:
				var w *query.RowWriter
				if w, err = query.NewRowWriter(g.stdout, outFormat, len(headers) > 0); err == nil {
					sum, err = query.SearchEach(store, opt, w.Write)
					err = errors.Join(err, w.Close())
				}
			}
			g.printTimings(opt.Counts)
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			noteFewerHeaders(g, sum.FewerHeaders)
			if sum.Restarts > 0 {
				g.logger().Debug("compressed captures read", "decompressed_bytes", sum.Decompressed, "restart_points_used", sum.Restarts)
			}
			if sum.Undecided > 0 {
				fmt.Fprintf(g.stderr, "xffidx: note: --client-only left out %d hits whose request's header list could not be read whole (header block continued beyond the capture's reach, or cut by the snap length)\n", sum.Undecided)
			}
			return problemsExit(g, sum.Problems, sum.Matched > 0)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&ips, "ip", nil, "client address to look for (IPv4 or IPv6, any spelling); repeatable")
	f.StringArrayVar(&cidrs, "cidr", nil, "look for every address in this prefix (203.0.113.0/24, 2001:db8::/32); repeatable, combines with --ip")
	f.StringArrayVar(&ipFiles, "ip-file", nil, ipFileHelp)
	f.BoolVar(&keepGoing, "keep-going", false, keepGoingHelp)
	f.StringVar(&from, "from", "", "only packets at or after this time: RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), or relative to now (-30m, -2h, -7d)")
	f.StringVar(&to, "to", "", "only packets at or before this time (same forms as --from)")
	f.StringArrayVar(&files, "file", nil, "only captures whose absolute path or base name matches this glob (path.Match: *, ?, [...]; * does not cross /); repeatable")
	f.BoolVar(&flows, "flows", false, "one row per connection (innermost 5-tuple) instead of per packet")
	f.BoolVar(&wsFilter, "wireshark-filter", false, "print only a Wireshark display filter selecting every packet of the matched connections")
	f.StringVar(&writeOut, "write", "", "write the matched conversations (every packet of each matched connection, both directions) to this capture file: pcap, or pcapng when the packets have several link types or the name ends in .pcapng")
	f.BoolVar(&force, "force", false, "with --write: replace OUT if it exists (never a capture in the index, never through a symbolic link)")
	f.BoolVar(&clientOnly, "client-only", false, "keep a hit only if ADDR is the right-most XFF entry not in a --trusted-proxy range (spoof-proof attribution)")
	f.StringArrayVar(&trusted, "trusted-proxy", nil, "address or prefix of a proxy you trust to append the true peer address (with --client-only); repeatable")
	f.StringArrayVar(&headers, "header", nil, "search this forwarding header instead of X-Forwarded-For: X-Forwarded-For, Forwarded, X-Real-IP, True-Client-IP, CF-Connecting-IP (any case), or all; repeatable; each hit then names its header")
	f.StringVar(&outFormat, "format", "", "output: table, json or csv (default: table on a terminal, else json)")
	f.StringVar(&db, "db", "", "answer across every sensor from this central store (see publish) instead of the local index")
	f.StringArrayVar(&sensors, "sensor", nil, "with --db: only rows of this sensor; repeatable")
	return cmd
}

// parseWindow reads --from and --to against one "now".
func parseWindow(from, to string) (f, t time.Time, err error) {
	now := time.Now()
	if from != "" {
		if f, err = query.ParseTime(from, now); err != nil {
			return f, t, fmt.Errorf("--from: %w", err)
		}
	}
	if to != "" {
		if t, err = query.ParseTime(to, now); err != nil {
			return f, t, fmt.Errorf("--to: %w", err)
		}
	}
	return f, t, nil
}

// checkFormat checks --format, or picks the default: people get the table;
// pipes and scripts get NDJSON.
func checkFormat(g *globals, outFormat string) (string, error) {
	switch outFormat {
	case query.FormatTable, query.FormatJSON, query.FormatCSV:
		return outFormat, nil
	case "":
		if f, ok := g.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return query.FormatTable, nil
		}
		return query.FormatJSON, nil
	}
	return "", fmt.Errorf("--format %q: want table, json or csv", outFormat)
}

// problemsExit names the captures that could not be read and picks the exit
// status: 2 for any problem, else 0 when something was found, else 1.
func problemsExit(g *globals, problems []query.FileProblem, found bool) error {
	for _, p := range problems {
		fmt.Fprintln(g.stderr, "xffidx:", query.Sanitize([]byte(p.Error()), 1024))
	}
	switch {
	case len(problems) > 0:
		return &exitError{code: exitTrouble}
	case !found:
		return &exitError{code: exitNone}
	}
	return nil
}

// noteFewerHeaders tells which captures a search of other headers could not
// see into yet: an older xffidx indexed them for X-Forwarded-For alone.
func noteFewerHeaders(g *globals, paths []string) {
	if len(paths) == 0 {
		return
	}
	shown := make([]string, 0, 3)
	for _, p := range paths[:min(len(paths), 3)] {
		shown = append(shown, safe(p))
	}
	more := ""
	if len(paths) > 3 {
		more = fmt.Sprintf(" and %d more", len(paths)-3)
	}
	fmt.Fprintf(g.stderr, "xffidx: note: an older xffidx indexed %s%s for X-Forwarded-For alone: build them again (xffidx build PATH...) to index their other headers\n", strings.Join(shown, ", "), more)
}

// queryFleet answers a query from the central store: the rows of every
// sensor (or those named), each naming its sensor.
func queryFleet(g *globals, db string, sensors []string, opt query.Options, outFormat string, showHeader, local, flows, wsFilter bool) error {
	fail := func(err error) error { return &exitError{code: exitTrouble, err: fmt.Errorf("query: %w", err)} }
	if local {
		return fail(errors.New("--write and --client-only read the packets, which stay on the sensors: run the query there (the rows' sensor field names them)"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	conn, err := fleet.Dial(ctx, db)
	if err != nil {
		return &exitError{code: exitTrouble, err: err}
	}
	defer conn.Close(context.Background())
	fo := fleet.Options{Prefixes: opt.Prefixes, From: opt.From, To: opt.To, Files: opt.Files, Headers: opt.Headers, Sensors: sensors}
	var n int
	if flows || wsFilter {
		format := outFormat
		if wsFilter {
			format = query.FormatFilter
		}
		var w *query.FlowWriter
		if w, err = query.NewSensorFlowWriter(g.stdout, format); err != nil {
			return fail(err)
		}
		err = query.GroupFlows(opt.SortMem, func(add func(query.Row) error) error {
			n, err = fleet.Search(ctx, conn, fo, add)
			return err
		}, w.Write)
		err = errors.Join(err, w.Close())
	} else {
		var w *query.RowWriter
		if w, err = query.NewSensorRowWriter(g.stdout, outFormat, showHeader); err != nil {
			return fail(err)
		}
		n, err = fleet.Search(ctx, conn, fo, w.Write)
		err = errors.Join(err, w.Close())
	}
	if err != nil {
		return &exitError{code: exitTrouble, err: errors.New(fleet.Redact(err.Error(), db))}
	}
	if n == 0 {
		return &exitError{code: exitNone}
	}
	return nil
}
