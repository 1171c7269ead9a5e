package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/xffidx/xffidx/query"
)

func newQuery(g *globals) *cobra.Command {
	var ips []string
	var outFormat string
	cmd := &cobra.Command{
		Use:   "query --ip ADDR [flags]",
		Short: "Print the connections whose X-Forwarded-For values held an address",
		Long: `Print one row per packet whose X-Forwarded-For values hold ADDR (at any
position in the list), with its innermost TCP 5-tuple and timestamp, reading
only those packet records.

Formats: table (the default on a terminal), json (the default otherwise; NDJSON,
one object per hit: xff_ip, xff, file, offset, ts, src_ip, src_port, dst_ip,
dst_port, proto), csv (RFC 4180 with a header row).

Exit status, as grep's: 0 hits found, 1 none, 2 error (including a capture that
vanished or changed since it was indexed; its hits are reported, not decoded).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(ips) == 0 {
				return &exitError{code: exitTrouble, err: errors.New("query: --ip ADDR is required")}
			}
			var prefixes []netip.Prefix
			for _, s := range ips {
				a, err := netip.ParseAddr(strings.Trim(s, "[]"))
				if err != nil {
					return &exitError{code: exitTrouble, err: fmt.Errorf("query: --ip %q: not an IP address", s)}
				}
				a = a.WithZone("").Unmap()
				prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
			}
			if outFormat == "" {
				// People get the table; pipes and scripts get NDJSON.
				outFormat = query.FormatJSON
				if f, ok := g.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					outFormat = query.FormatTable
				}
			}
			res, err := query.Lookup(g.store(), prefixes)
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			if err := query.Write(g.stdout, outFormat, res.Rows); err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			for _, p := range res.Problems {
				fmt.Fprintln(g.stderr, "xffidx:", query.Sanitize([]byte(p.Error()), 1024))
			}
			switch {
			case len(res.Problems) > 0:
				return &exitError{code: exitTrouble}
			case len(res.Rows) == 0:
				return &exitError{code: exitNone}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&ips, "ip", nil, "client address to look for (IPv4 or IPv6, any spelling)")
	cmd.Flags().StringVar(&outFormat, "format", "", "output: table, json or csv (default: table on a terminal, else json)")
	return cmd
}
