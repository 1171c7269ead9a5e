package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/xffidx/xffidx/query"
)

// ipFileHelp is the help of --ip-file and --keep-going, shared by query
// and top.
const (
	ipFileHelp    = "read addresses and CIDR prefixes from this file, one a line (# comments and blank lines allowed; - reads stdin); repeatable, combines with --ip and --cidr"
	keepGoingHelp = "with --ip-file: skip a line that is not an address or prefix with a warning naming it, instead of stopping with exit status 2"
)

// readIPFiles reads the --ip-file lists (query.ReadAddrList), "-" from
// stdin. Without keepGoing the first bad line is the error; with it each
// is a warning on stderr and is skipped.
func readIPFiles(g *globals, stdin io.Reader, paths []string, keepGoing bool) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var skip func(*query.BadLine) error
	if keepGoing {
		skip = func(b *query.BadLine) error {
			fmt.Fprintf(g.stderr, "xffidx: warning: %s: skipped\n", safe(b.Error()))
			return nil
		}
	}
	for _, p := range paths {
		r, name := stdin, "stdin"
		if p != "-" {
			f, err := os.Open(p)
			if err != nil {
				return nil, fmt.Errorf("--ip-file: %w", err)
			}
			defer f.Close()
			r, name = f, p
		}
		ps, err := query.ReadAddrList(r, name, skip)
		if err != nil {
			return nil, fmt.Errorf("--ip-file: %w", err)
		}
		if len(ps) == 0 {
			fmt.Fprintf(g.stderr, "xffidx: note: %s lists no address\n", safe(name))
		}
		out = append(out, ps...)
	}
	return out, nil
}
