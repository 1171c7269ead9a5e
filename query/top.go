package query

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/xffidx/xffidx/index/extsort"

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
	// Prefixes, if any, restrict the ranking to the addresses in them (a
	// list of addresses to rank); none: every address.
	Prefixes []netip.Prefix
	// BatchAddrs and BatchHits bound one batch of windowed counting (the
	// addresses looked up in one opening of the index); 0: 1024 and 2^18.
	BatchAddrs, BatchHits int
	// SortMem as in Options: the candidates, and each winner's flows, are
	// sorted in bounded memory.
	SortMem int
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
	// Spills counts the sorted runs written to temporary files.
	Spills int
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
	so := Options{From: opt.From, To: opt.To, Files: opt.Files, Headers: opt.Headers, SortMem: opt.SortMem}
	batchAddrs, batchLimit := cmp.Or(opt.BatchAddrs, 1024), cmp.Or(opt.BatchHits, 1<<18)
	if err := so.Validate(); err != nil {
		return TopResult{}, err
	}
	fewer, err := so.fewerHeadersIn(store)
	if err != nil {
		return TopResult{}, err
	}

	// One scan: per address, upper (hits in captures overlapping the
	// window) and lower (hits in captures wholly inside it) bounds. The
	// candidates are sorted by upper bound, most first, in bounded memory.
	type cand struct {
		addr         netip.Addr
		upper, lower int
	}
	cands := extsort.New(bytes.Compare, opt.SortMem, "")
	defer cands.Close()
	var rec []byte
	lows := &intHeap{} // the N largest lower bounds so far
	threshold := func() int {
		if lows.Len() < opt.N {
			return 0
		}
		return (*lows)[0]
	}
	cur := cand{}
	spans := map[*index.FileInfo]int{}
	flush := func() error {
		if cur.upper == 0 {
			return nil
		}
		heap.Push(lows, cur.lower)
		if lows.Len() > opt.N {
			heap.Pop(lows)
		}
		// An address whose possible hits are below the N-th certain count
		// cannot be among the N.
		if cur.upper < threshold() {
			return nil
		}
		rec = binary.BigEndian.AppendUint64(rec[:0], ^uint64(cur.upper))
		rec = appendAddr(rec, cur.addr)
		rec = binary.AppendUvarint(rec, uint64(cur.lower))
		return cands.Add(rec)
	}
	var scanProblems []FileProblem
	err = store.ScanHitsIn(opt.Prefixes, so.headers(), func(a netip.Addr, f *index.FileInfo, off int64) error {
		if a != cur.addr {
			if err := flush(); err != nil {
				return err
			}
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
	if scanProblems, err = so.invalidEntries(err); err == nil {
		err = flush()
	}
	if err != nil {
		return TopResult{}, err
	}
	t := threshold()

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
	// beaten: neither c nor any later candidate can beat the N-th.
	beaten := func(c cand) bool {
		if len(ranked) < opt.N {
			return false
		}
		nth := ranked[opt.N-1]
		return c.upper < nth.hits || (c.upper == nth.hits && c.addr.Compare(nth.addr) > 0)
	}
	// Candidates whose count needs timestamps are looked up together, a
	// batch of addresses (up to a bound on their hits) in one opening of
	// the index; whether the rest can still matter is asked before each
	// batch.
	var batch []netip.Addr
	batchHits, atStart := 0, true
	count := func() error {
		counts, probs, err := countInWindow(store, batch, so)
		if err != nil {
			return err
		}
		res.Problems = append(res.Problems, probs...)
		for _, a := range batch {
			add(a, counts[a])
		}
		batch, batchHits = batch[:0], 0
		return nil
	}
	errRanked := errors.New("ranked")
	err = cands.Each(func(rec []byte) error {
		r := recReader{b: rec}
		c := cand{upper: int(^r.uint64())}
		c.addr = r.addr()
		c.lower = int(r.uvarint())
		if r.err != nil {
			return r.err
		}
		if c.upper < t {
			return errRanked // and so are all later ones
		}
		if atStart {
			if beaten(c) {
				return errRanked
			}
			atStart = false
		}
		if len(batch) > 0 && (len(batch) >= batchAddrs || batchHits+c.upper > batchLimit) {
			if err := count(); err != nil {
				return err
			}
			if beaten(c) {
				return errRanked
			}
		}
		if c.lower == c.upper {
			add(c.addr, c.upper) // certain without reading
			return nil
		}
		batch = append(batch, c.addr)
		batchHits += c.upper
		return nil
	})
	if errors.Is(err, errRanked) {
		err = nil
	}
	res.Spills += cands.Spills()
	if err == nil && len(batch) > 0 {
		err = count()
	}
	if err != nil {
		return TopResult{}, err
	}

	// Read the winners' packets for flows and times.
	rankProblems := mergeProblems(res.Problems)
	res.Problems = nil
	for _, sc := range ranked {
		so.Prefixes = []netip.Prefix{netip.PrefixFrom(sc.addr, sc.addr.BitLen())}
		row, problems, spills, err := topRow(store, so, sc.addr)
		if err != nil {
			return TopResult{}, err
		}
		res.Spills += spills
		res.Problems = append(res.Problems, problems...)
		if row.Hits > 0 {
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
	var probs []FileProblem
	counts := map[netip.Addr]int{}
	r := &recordReader{store: store}
	defer r.close()
	var (
		file    *index.FileInfo
		fileErr error
		errHits int
		lastOff int64 = -1
		inside  bool  // the last packet read is in the window
		readErr bool  // it could not be read (the last problem)
	)
	endFile := func() {
		if fileErr != nil {
			probs = append(probs, FileProblem{Path: file.Path, Hits: errHits, Err: fileErr})
		}
		fileErr, errHits = nil, 0
	}
	_, err := so.storeFor(store).LookupEach(ps, so.headers(), func(h index.Hit) error {
		if h.File != file {
			if file != nil {
				endFile()
			}
			file, lastOff = h.File, -1
			if so.fileMatches(file) && so.fileSpan(file) == spanStraddles {
				fileErr = r.open(file)
			}
		}
		switch {
		case !so.fileMatches(file):
		case so.fileSpan(file) == spanInside:
			counts[h.Addr]++
		case so.fileSpan(file) == spanStraddles:
			if fileErr != nil {
				errHits++
				return nil
			}
			// Hits are in offset order: one read per packet.
			if h.Offset != lastOff {
				lastOff = h.Offset
				rec, err := r.record(h.Offset)
				inside, readErr = false, err != nil
				if readErr {
					probs = append(probs, FileProblem{Path: file.Path, Err: err})
				} else {
					var ts time.Time
					if rec.TS != 0 {
						ts = time.Unix(0, rec.TS).UTC()
					}
					inside = so.inWindow(ts)
				}
			}
			switch {
			case readErr:
				probs[len(probs)-1].Hits++
			case inside:
				counts[h.Addr]++
			}
		}
		return nil
	})
	if file != nil {
		endFile()
	}
	// Invalid catalog entries: the scan that chose these addresses named
	// them with all their hits already.
	_, err = so.invalidEntries(err)
	return counts, probs, err
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

// NoteTime widens the row's first and last seen to ts (a zero ts, a
// packet without a timestamp, changes nothing).
func (row *TopRow) NoteTime(ts time.Time, digits int) {
	if ts.IsZero() {
		return
	}
	if row.First.IsZero() || ts.Before(row.First) {
		row.First, row.FirstDigit = ts, digits
	}
	if row.Last.IsZero() || ts.After(row.Last) {
		row.Last, row.LastDigit = ts, digits
	}
}

// topRow reads one address's packets and sums them up: hits (packets:
// one row per packet for one address), distinct flows (their keys sorted
// in bounded memory), first and last time.
func topRow(store *index.Store, so Options, a netip.Addr) (TopRow, []FileProblem, int, error) {
	row := TopRow{Addr: a}
	flows := extsort.New(bytes.Compare, so.SortMem, "")
	defer flows.Close()
	var key []byte
	sum, err := SearchEach(store, so, func(r Row) error {
		row.Hits++
		key = appendKey(key[:0], keyOf(r.FiveTuple))
		if err := flows.Add(key); err != nil {
			return err
		}
		row.NoteTime(r.TS, r.TSDigit)
		return nil
	})
	if err != nil {
		return row, nil, 0, err
	}
	var last []byte
	err = flows.Each(func(k []byte) error {
		if last == nil || !bytes.Equal(k, last) {
			row.Flows++
			last = append(last[:0], k...)
		}
		return nil
	})
	return row, sum.Problems, sum.Spills + flows.Spills(), err
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
	bw := bufio.NewWriterSize(out, 64<<10)
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		for _, r := range rows {
			if err := enc.Encode(jsonTop{Addr: r.Addr.String(), Hits: r.Hits, Flows: r.Flows,
				FirstTS: FormatTS(r.First, r.FirstDigit), LastTS: FormatTS(r.Last, r.LastDigit)}); err != nil {
				return err
			}
		}
	case FormatCSV:
		cw := csv.NewWriter(bw)
		cw.UseCRLF = true
		cw.Write([]string{"addr", "hits", "flows", "first_ts", "last_ts"})
		for _, r := range rows {
			cw.Write([]string{r.Addr.String(), strconv.Itoa(r.Hits), strconv.Itoa(r.Flows),
				FormatTS(r.First, r.FirstDigit), FormatTS(r.Last, r.LastDigit)})
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	case FormatTable:
		tab := &table{w: bw}
		tab.row("ADDR", "HITS", "FLOWS", "FIRST", "LAST")
		for _, r := range rows {
			tab.row(r.Addr.String(), strconv.Itoa(r.Hits), strconv.Itoa(r.Flows),
				FormatTS(r.First, r.FirstDigit), FormatTS(r.Last, r.LastDigit))
		}
		tab.flush()
	default:
		return fmt.Errorf("unknown output format %q (want table, json or csv)", format)
	}
	return bw.Flush()
}
