package main

import (
	"fmt"
	"time"

	"github.com/xffidx/xffidx/query"
)

// searchCounts returns the counts a search fills when --timings is given,
// else nil (nothing is timed).
func (g *globals) searchCounts() *query.Counts {
	if !g.timings {
		return nil
	}
	return &query.Counts{}
}

// printTimings prints, on stderr, where a search's time went (for
// bench/run.sh): from the start of main, and the search's parts.
func (g *globals) printTimings(c *query.Counts) {
	if c == nil {
		return
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/1e6) }
	fmt.Fprintf(g.stderr, "xffidx: timings (ms): main=%s search=%s open=%s catalog=%s lookup=%s reads=%s decode=%s output=%s records=%d opens=%d\n",
		ms(time.Since(g.start)), ms(c.Total), ms(time.Duration(c.Index.OpenNanos.Load())), ms(time.Duration(c.Index.CatalogNanos.Load())),
		ms(c.Lookup()), ms(c.Reads), ms(c.Decode), ms(c.Output), c.Records, c.Index.Opens.Load())
}
