package query

import (
	"cmp"
	"container/heap"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

// TopOptions select what Top ranks.
type TopOptions struct {
	N        int // how many addresses
	From, To time.Time
	Files    []string
	// Headers as in Options: X-Forwarded-For alone when zero. With several,
	// a hit is a packet and header, as a query row is.
	Headers xff.HeaderSet
	// BatchAddrs and BatchHits bound one batch of windowed counting (the
	// addresses looked up in one opening of the index); 0: 1024 and 2^18.
	BatchAddrs, BatchHits int
}

// TopRow is one of the most frequent XFF addresses.
type TopRow struct {
	Addr                  netip.Addr
	Hits                  int // packets whose XFF list held it (in the window)
	Flows                 int // distinct innermost 5-tuples among those packets
	First, Last           time.Time
	FirstDigit, LastDigit int
}

// TopResult is Top's answer.
type TopResult struct {
	Rows     []TopRow
	Problems []FileProblem
	// FewerHeaders as in Result.
	FewerHeaders []string
}

// Top returns the N addresses with the most hits, most first (ties: lower
// address first), with their flows and first and last timestamps.
//
// Hits are counted from the index in one scan of its hit keys, without
// reading any capture: with no time window that count is the ranking, and
// only the N winners' packets are read, for flows and times. With a window
// the index cannot tell a hit's time: a capture whose time span is wholly in
// the window counts all its hits, one wholly outside counts none, and hits
// in a capture that straddles a window edge are only possible. Candidates
// are then taken in order of possible hits and their packets read and
// filtered by timestamp, until no remaining candidate's possible count can
// beat the N-th exact one: the ranking is exact, and only the captures and
// addresses that can matter are read.
func Top(store *index.Store, opt TopOptions) (TopResult, error) {
	if opt.N < 1 {
		return TopResult{}, fmt.Errorf("top: N must be at least 1")
	}
	so := Options{From: opt.From, To: opt.To, Files: opt.Files, Headers: opt.Headers}
	batchAddrs, batchHits := cmp.Or(opt.BatchAddrs, 1024), cmp.Or(opt.BatchHits, 1<<18)
	if err := so.Validate(); err != nil {
		return TopResult{}, err
	}
	fewer, err := so.fewerHeadersIn(store)
	if err != nil {
		return TopResult{}, err
	}

	// One scan: per address, upper (hits in captures overlapping the
	// window) and lower (hits in captures wholly inside it) bounds.
	type cand struct {
		addr         netip.Addr
		upper, lower int
	}
	var cands []cand
	lows := &intHeap{} // the N largest lower bounds so far
	threshold := func() int {
		if lows.Len() < opt.N {
			return 0
		}
		return (*lows)[0]
	}
	cur := cand{}
	spans := map[*index.FileInfo]int{}
	compactAt := 4 * opt.N
	flush := func() {
		if cur.upper == 0 {
			return
		}
		heap.Push(lows, cur.lower)
		if lows.Len() > opt.N {
			heap.Pop(lows)
		}
		// An address whose possible hits are below the N-th certain count
		// cannot be among the N.
		if cur.upper >= threshold() {
			cands = append(cands, cur)
		}
		if len(cands) >= compactAt {
			t := threshold()
			cands = slices.DeleteFunc(cands, func(c cand) bool { return c.upper < t })
			compactAt = max(compactAt, 2*len(cands))
		}
	}
	var scanProblems []FileProblem
	err = store.ScanHits(so.headers(), func(a netip.Addr, f *index.FileInfo, off int64) error {
		if a != cur.addr {
			flush()
			cur = cand{addr: a}
		}
		sp, ok := spans[f]
		if !ok {
			sp = spanOutside
			if so.fileMatches(f) {
				sp = so.fileSpan(f)
			}
			spans[f] = sp
		}
		switch sp {
		case spanInside:
			cur.upper++
			cur.lower++
		case spanStraddles:
			cur.upper++
		}
		return nil
	})
	if scanProblems, err = so.invalidEntries(err); err != nil {
		return TopResult{}, err
	}
	flush()
	t := threshold()
	cands = slices.DeleteFunc(cands, func(c cand) bool { return c.upper < t })
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(cmp.Compare(b.upper, a.upper), a.addr.Compare(b.addr))
	})

	// Rank: exact hit counts, candidates in order of possible hits.
	type scored struct {
		addr netip.Addr
		hits int
	}
	var ranked []scored
	better := func(a, b scored) int { return cmp.Or(cmp.Compare(b.hits, a.hits), a.addr.Compare(b.addr)) }
	res := TopResult{FewerHeaders: fewer, Problems: scanProblems}
	add := func(a netip.Addr, n int) {
		if n == 0 {
			return
		}
		sc := scored{a, n}
		i, _ := slices.BinarySearchFunc(ranked, sc, better)
		ranked = slices.Insert(ranked, i, sc)
		if len(ranked) > opt.N {
			ranked = ranked[:opt.N]
		}
	}
	for i := 0; i < len(cands); {
		if len(ranked) == opt.N {
			c, nth := cands[i], ranked[opt.N-1]
			if c.upper < nth.hits || (c.upper == nth.hits && c.addr.Compare(nth.addr) > 0) {
				break // neither it nor any later candidate can beat the N-th
			}
		}
		// Candidates whose count needs timestamps are looked up together,
		// a batch of addresses (up to a bound on their hits) in one
		// opening of the index.
		var batch []netip.Addr
		hits := 0
		for ; i < len(cands) && len(batch) < batchAddrs && (len(batch) == 0 || hits+cands[i].upper <= batchHits); i++ {
			c := cands[i]
			if c.lower == c.upper {
				add(c.addr, c.upper) // certain without reading
				continue
			}
			batch = append(batch, c.addr)
			hits += c.upper
		}
		if len(batch) == 0 {
			continue
		}
		counts, probs, err := countInWindow(store, batch, so)
		if err != nil {
			return TopResult{}, err
		}
		res.Problems = append(res.Problems, probs...)
		for _, a := range batch {
			add(a, counts[a])
		}
	}

	// Read the winners' packets for flows and times.
	rankProblems := mergeProblems(res.Problems)
	res.Problems = nil
	for _, sc := range ranked {
		so.Prefixes = []netip.Prefix{netip.PrefixFrom(sc.addr, sc.addr.BitLen())}
		sr, err := Search(store, so)
		if err != nil {
			return TopResult{}, err
		}
		res.Problems = append(res.Problems, sr.Problems...)
		if row, ok := topRow(sc.addr, sr.Rows); ok {
			res.Rows = append(res.Rows, row)
		}
	}
	res.Problems = mergeProblems(res.Problems)
	// A capture the ranking could not read, and the winners did not need.
	for _, p := range rankProblems {
		if !slices.ContainsFunc(res.Problems, func(q FileProblem) bool { return q.Path == p.Path }) {
			res.Problems = append(res.Problems, p)
		}
	}
	return res, nil
}

// countInWindow counts the hits of each address in the window without
// decoding packets: all of a capture wholly inside it, and in a capture that
// straddles an edge, those whose record timestamp is inside (or that have
// none).
func countInWindow(store *index.Store, addrs []netip.Addr, so Options) (map[netip.Addr]int, []FileProblem, error) {
	ps := make([]netip.Prefix, len(addrs))
	for i, a := range addrs {
		ps[i] = netip.PrefixFrom(a, a.BitLen())
	}
	hits, _, err := store.Lookup(ps, so.headers())
	// Invalid catalog entries: the scan that chose these addresses named
	// them with all their hits already.
	if _, err = so.invalidEntries(err); err != nil {
		return nil, nil, err
	}
	var probs []FileProblem
	counts := map[netip.Addr]int{}
	r := &recordReader{}
	defer r.close()
	for i := 0; i < len(hits); {
		j := i
		for j < len(hits) && hits[j].File == hits[i].File {
			j++
		}
		f := hits[i].File
		switch {
		case !so.fileMatches(f):
		case so.fileSpan(f) == spanInside:
			for _, h := range hits[i:j] {
				counts[h.Addr]++
			}
		case so.fileSpan(f) == spanStraddles:
			if err := r.open(f); err != nil {
				probs = append(probs, FileProblem{Path: f.Path, Hits: j - i, Err: err})
				break
			}
			for k := i; k < j; {
				// Hits are in offset order: one read per packet.
				l := k
				for l < j && hits[l].Offset == hits[k].Offset {
					l++
				}
				rec, err := r.record(hits[k].Offset)
				if err != nil {
					probs = append(probs, FileProblem{Path: f.Path, Hits: l - k, Err: err})
					k = l
					continue
				}
				var ts time.Time
				if rec.TS != 0 {
					ts = time.Unix(0, rec.TS).UTC()
				}
				if so.inWindow(ts) {
					for _, h := range hits[k:l] {
						counts[h.Addr]++
					}
				}
				k = l
			}
		}
		i = j
	}
	return counts, probs, nil
}

// mergeProblems reports each file (and error) once, with the hits of all
// addresses: the same vanished capture is met by the look-up of every
// address it holds.
func mergeProblems(ps []FileProblem) []FileProblem {
	var out []FileProblem
	at := map[string]int{}
	for _, p := range ps {
		if i, ok := at[p.Path+"\x00"+p.Err.Error()]; ok {
			out[i].Hits += p.Hits
			continue
		}
		at[p.Path+"\x00"+p.Err.Error()] = len(out)
		out = append(out, p)
	}
	return out
}

// topRow sums up one address's rows.
func topRow(a netip.Addr, rows []Row) (TopRow, bool) {
	if len(rows) == 0 {
		return TopRow{}, false
	}
	row := TopRow{Addr: a, Hits: len(rows)} // one row per packet for one address
	flows := map[flowKey]bool{}
	for _, r := range rows {
		flows[keyOf(r.FiveTuple)] = true
		if r.TS.IsZero() {
			continue
		}
		if row.First.IsZero() || r.TS.Before(row.First) {
			row.First, row.FirstDigit = r.TS, r.TSDigit
		}
		if row.Last.IsZero() || r.TS.After(row.Last) {
			row.Last, row.LastDigit = r.TS, r.TSDigit
		}
	}
	row.Flows = len(flows)
	return row, true
}

type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// jsonTop fixes the NDJSON shape of top.
type jsonTop struct {
	Addr    string `json:"addr"`
	Hits    int    `json:"hits"`
	Flows   int    `json:"flows"`
	FirstTS string `json:"first_ts"`
	LastTS  string `json:"last_ts"`
}

// WriteTop prints top rows: NDJSON, CSV with a header row, or a table.
func WriteTop(out io.Writer, format string, rows []TopRow) error {
	return buffered(out, func(w io.Writer) error { return writeTop(w, format, rows) })
}

func writeTop(w io.Writer, format string, rows []TopRow) error {
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, r := range rows {
			if err := enc.Encode(jsonTop{Addr: r.Addr.String(), Hits: r.Hits, Flows: r.Flows,
				FirstTS: FormatTS(r.First, r.FirstDigit), LastTS: FormatTS(r.Last, r.LastDigit)}); err != nil {
				return err
			}
		}
		return nil
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.UseCRLF = true
		cw.Write([]string{"addr", "hits", "flows", "first_ts", "last_ts"})
		for _, r := range rows {
			cw.Write([]string{r.Addr.String(), strconv.Itoa(r.Hits), strconv.Itoa(r.Flows),
				FormatTS(r.First, r.FirstDigit), FormatTS(r.Last, r.LastDigit)})
		}
		cw.Flush()
		return cw.Error()
	case FormatTable:
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDR\tHITS\tFLOWS\tFIRST\tLAST")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", r.Addr, r.Hits, r.Flows,
				FormatTS(r.First, r.FirstDigit), FormatTS(r.Last, r.LastDigit))
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown output format %q (want table, json or csv)", format)
}
