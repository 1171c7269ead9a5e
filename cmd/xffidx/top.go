package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/xffidx/xffidx/fleet"
	"github.com/xffidx/xffidx/query"
)

func newTop(g *globals) *cobra.Command {
	var n int
	var from, to, outFormat, db string
	var files, headers, sensors, ipFiles []string
	var keepGoing bool
	cmd := &cobra.Command{
		Use:   "top [--n 20] [flags]",
		Short: "Print the X-Forwarded-For addresses with the most hits",
		Long: `Print the N addresses found most often in X-Forwarded-For values, most first
(ties: lower address first), with hits (packets whose XFF list held the
address), flows (distinct innermost TCP 5-tuples among those packets), and
the first and last time they were seen.

Without --from/--to the ranking is by indexed hits over the whole index: one
scan of the index, no capture read; only the N winners' packets are read,
for flows and times. With a time window the ranking is exact for the window:
captures wholly inside it count all their hits and captures wholly outside
count none, both without being read; in a capture that straddles an edge,
the hits of the addresses that could still make the top N are read and
counted by packet timestamp.

--ip-file FILE ranks only the addresses it lists (addresses and CIDR
prefixes, one a line, as query --ip-file reads them; - reads stdin): which
of the 3,000 addresses a firewall flagged were the busiest.

Formats: table (the default on a terminal), json (the default otherwise;
NDJSON: addr, hits, flows, first_ts, last_ts), csv (RFC 4180 with a header row).

Exit status: 0 addresses found, 1 none, 2 error (including a capture that
vanished or changed since it was indexed).`,
		Example: `  xffidx top
  xffidx top --n 5 --from -1d --format csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fail := func(err error) error { return &exitError{code: exitTrouble, err: fmt.Errorf("top: %w", err)} }
			if n < 1 {
				return fail(errors.New("--n must be at least 1"))
			}
			opt := query.TopOptions{N: n, Files: files}
			if keepGoing && len(ipFiles) == 0 {
				return fail(errors.New("--keep-going applies only with --ip-file"))
			}
			var err error
			if opt.Prefixes, err = readIPFiles(g, cmd.InOrStdin(), ipFiles, keepGoing); err != nil {
				return fail(err)
			}
			if len(ipFiles) > 0 && len(opt.Prefixes) == 0 {
				return &exitError{code: exitNone}
			}
			if opt.Headers, err = query.ParseHeaders(headers); err != nil {
				return fail(fmt.Errorf("--header: %v", err))
			}
			if opt.From, opt.To, err = parseWindow(from, to); err != nil {
				return fail(err)
			}
			if outFormat, err = checkFormat(g, outFormat); err != nil {
				return fail(err)
			}
			if db != "" {
				return topFleet(g, db, sensors, opt, outFormat)
			}
			if len(sensors) > 0 {
				return fail(errors.New("--sensor applies only with --db"))
			}
			store, err := g.store()
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			res, err := query.Top(store, opt)
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			if err := query.WriteTop(g.stdout, outFormat, res.Rows); err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			noteFewerHeaders(g, res.FewerHeaders)
			return problemsExit(g, res.Problems, len(res.Rows) > 0)
		},
	}
	f := cmd.Flags()
	f.IntVar(&n, "n", 20, "how many addresses")
	f.StringVar(&db, "db", "", "rank across every sensor from this central store (see publish) instead of the local index")
	f.StringArrayVar(&sensors, "sensor", nil, "with --db: only rows of this sensor; repeatable")
	f.StringVar(&from, "from", "", "only packets at or after this time: RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), or relative to now (-30m, -2h, -7d)")
	f.StringVar(&to, "to", "", "only packets at or before this time (same forms as --from)")
	f.StringArrayVar(&files, "file", nil, "only captures whose absolute path or base name matches this glob; repeatable")
	f.StringArrayVar(&ipFiles, "ip-file", nil, "rank only the addresses in this list: addresses and CIDR prefixes, one a line (# comments and blank lines allowed; - reads stdin); repeatable")
	f.BoolVar(&keepGoing, "keep-going", false, keepGoingHelp)
	f.StringArrayVar(&headers, "header", nil, "rank addresses of this forwarding header instead of X-Forwarded-For (as query --header; all for every one); a hit is then a packet and header")
	f.StringVar(&outFormat, "format", "", "output: table, json or csv (default: table on a terminal, else json)")
	return cmd
}

// topFleet ranks addresses across the sensors from the central store.
func topFleet(g *globals, db string, sensors []string, opt query.TopOptions, outFormat string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	conn, err := fleet.Dial(ctx, db)
	if err != nil {
		return &exitError{code: exitTrouble, err: err}
	}
	defer conn.Close(context.Background())
	rows, err := fleet.Top(ctx, conn, opt.N, fleet.Options{Prefixes: opt.Prefixes, From: opt.From, To: opt.To, Files: opt.Files, Headers: opt.Headers, Sensors: sensors})
	if err == nil {
		err = query.WriteTop(g.stdout, outFormat, rows)
	}
	if err != nil {
		return &exitError{code: exitTrouble, err: errors.New(fleet.Redact(err.Error(), db))}
	}
	if len(rows) == 0 {
		return &exitError{code: exitNone}
	}
	return nil
}
