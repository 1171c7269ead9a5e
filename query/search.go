package query

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

// Request is the HTTP request that carried a hit's header line, read
// from the same packet at query time: method, Host header and request target.
// All three are empty when the packet continues a header block begun in an
// earlier TCP segment (the request line is not in it), and Host is empty
// when it is not in the packet.
type Request struct {
	Method, Host, Path []byte
}

// Options select what Search reports.
type Options struct {
	// Prefixes to look up (a single address is a /32 or /128 prefix).
	// Overlapping prefixes give each hit once.
	Prefixes []netip.Prefix
	// From and To bound the packet timestamp, both inclusive; a zero value
	// leaves that side open. Files whose indexed time span lies outside the
	// window are not read at all. A packet without a timestamp (a pcapng
	// Simple Packet Block) is in the window when its file's span overlaps it.
	From, To time.Time
	// Files restricts the search to captures whose absolute path, or base
	// name, matches one of these path.Match patterns. Empty: every capture.
	Files []string
	// Select, if set, restricts the search further to the captures it
	// accepts (a library caller's choice by catalog entry), and StartAt,
	// if set, to the hits of each at or after the offset it returns; both
	// are decided before a packet is read.
	Select  func(*index.FileInfo) bool
	StartAt func(*index.FileInfo) int64
	// ClientOnly keeps a hit only when the address is the right-most entry
	// of its request's list (of the hit's header) that is not in Trusted
	// (see ClientAddr).
	ClientOnly bool
	Trusted    []netip.Prefix
	// Headers selects the forwarding headers searched; the zero value means
	// X-Forwarded-For alone.
	Headers xff.HeaderSet
	// SortMem bounds the memory each sort of a search (the index look-up's,
	// the aggregation of flows, top and --write) holds before it spills
	// sorted runs to temporary files; 0: extsort.DefaultBudget.
	SortMem int
	// Counts, if set, receives what the search did and where its time
	// went.
	Counts *Counts
}

// Counts is what a search did and where its time went: bench/run.sh's
// breakdown of a query, and tests of how often packets are read. The clock
// is read only when a search is given one.
type Counts struct {
	// Index counts the index's part: openings and the time to open and
	// close it, catalog entries read and the time to read them (unless
	// the store counts into Counts of its own).
	Index index.Counts
	// Records counts the packet records read and decoded: each packet
	// once, however many of its addresses the search asked for.
	Records int64
	// Total is the whole search; Reads reading packet records from the
	// captures (opening them too); Decode decoding them and making rows;
	// Output what the rows' consumer took (printing them).
	Total, Reads, Decode, Output time.Duration
}

// Lookup is the rest of Total: reading hit keys and request records from
// the index and sorting them by capture and offset.
func (c *Counts) Lookup() time.Duration {
	return c.Total - time.Duration(c.Index.OpenNanos.Load()+c.Index.CatalogNanos.Load()) - c.Reads - c.Decode - c.Output
}

// now is the time, if c is set.
func (c *Counts) now() time.Time {
	if c == nil {
		return time.Time{}
	}
	return time.Now()
}

// counting points the store's counts at c's, if the store has none.
func (c *Counts) counting(store *index.Store) {
	if c != nil && store.Counts == nil {
		store.Counts = &c.Index
	}
}

// ParseHeaders reads --header values: header names in any letter case
// (X-Forwarded-For, Forwarded, X-Real-IP, True-Client-IP, CF-Connecting-IP),
// or "all".
func ParseHeaders(names []string) (xff.HeaderSet, error) {
	var set xff.HeaderSet
	for _, n := range names {
		n = strings.TrimSuffix(strings.TrimSpace(n), ":")
		if strings.EqualFold(n, "all") {
			set |= xff.AllHeaders
			continue
		}
		h, ok := xff.ParseHeader(n)
		if !ok {
			var known []string
			for h := range xff.NumHeaders {
				known = append(known, h.String())
			}
			return 0, fmt.Errorf("header %q: want one of %s, or all", n, strings.Join(known, ", "))
		}
		set |= xff.SetOf(h)
	}
	return set, nil
}

// fewerHeaders lists the captures these options select that were indexed
// for fewer headers than they search (by an older xffidx, for
// X-Forwarded-For alone), each path once.
func (o *Options) fewerHeaders(files []index.FileInfo) []string {
	var paths []string
	for i := range files {
		indexed := files[i].Headers
		if indexed == 0 {
			indexed = xff.SetOf(xff.XForwardedFor)
		}
		if o.selected(&files[i]) && o.headers()&^indexed != 0 && !slices.Contains(paths, files[i].Path) {
			paths = append(paths, files[i].Path)
		}
	}
	return paths
}

// fewerHeadersIn is fewerHeaders over the whole catalog, read only when
// the options search a header beyond X-Forwarded-For (every capture was
// indexed for that one).
func (o *Options) fewerHeadersIn(store *index.Store) ([]string, error) {
	if o.headers()&^xff.SetOf(xff.XForwardedFor) == 0 {
		return nil, nil
	}
	files, err := store.Catalog()
	var invalid index.InvalidEntries
	if err != nil && !errors.As(err, &invalid) {
		return nil, err // invalid entries are reported by the look-up
	}
	return o.fewerHeaders(files), nil
}

// invalidEntries turns the catalog entries a look-up found invalid (err
// is an index.InvalidEntries) into problems, those of captures the options
// leave out apart; any other error is returned.
func (o *Options) invalidEntries(err error) ([]FileProblem, error) {
	var invalid index.InvalidEntries
	if !errors.As(err, &invalid) {
		return nil, err
	}
	var out []FileProblem
	for _, e := range invalid {
		p := FileProblem{Path: e.Path, Hits: e.Hits, Err: fmt.Errorf("catalog entry is invalid: %w", e.Reason)}
		if e.Path == "" {
			p.Path = fmt.Sprintf("file %d of the index", e.ID)
		} else if !o.fileMatches(&index.FileInfo{Path: e.Path}) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// headers returns the headers searched.
func (o *Options) headers() xff.HeaderSet {
	if o.Headers == 0 {
		return xff.SetOf(xff.XForwardedFor)
	}
	return o.Headers
}

// Validate checks the patterns and the window.
func (o *Options) Validate() error {
	for _, g := range o.Files {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("file pattern %q: %w", g, err)
		}
	}
	if !o.From.IsZero() && !o.To.IsZero() && o.From.After(o.To) {
		return fmt.Errorf("time window: from %s is after to %s", o.From.Format(time.RFC3339Nano), o.To.Format(time.RFC3339Nano))
	}
	return nil
}

func (o *Options) windowed() bool { return !o.From.IsZero() || !o.To.IsZero() }

// fileMatches reports whether a capture passes the Files patterns.
func (o *Options) fileMatches(f *index.FileInfo) bool {
	if o.Select != nil && !o.Select(f) {
		return false
	}
	return MatchFiles(o.Files, f.Path)
}

// MatchFiles reports whether a capture's path passes --file patterns:
// path.Match on the absolute path or its base name; no pattern passes all.
func MatchFiles(globs []string, p string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, p); ok {
			return true
		}
		if ok, _ := path.Match(g, filepath.Base(p)); ok {
			return true
		}
	}
	return false
}

// Where a capture's indexed time span lies against the window.
const (
	spanOutside = iota
	spanStraddles
	spanInside
)

// fileSpan places a capture's [FirstTS, LastTS] against the window. A file
// without any timestamp is outside every window.
func (o *Options) fileSpan(f *index.FileInfo) int {
	if !o.windowed() {
		return spanInside
	}
	if f.FirstTS.IsZero() || f.LastTS.IsZero() {
		return spanOutside
	}
	if (!o.From.IsZero() && f.LastTS.Before(o.From)) || (!o.To.IsZero() && f.FirstTS.After(o.To)) {
		return spanOutside
	}
	if (o.From.IsZero() || !f.FirstTS.Before(o.From)) && (o.To.IsZero() || !f.LastTS.After(o.To)) {
		return spanInside
	}
	return spanStraddles
}

// selected reports whether a capture may hold hits for these options,
// judged from its catalog entry alone.
func (o *Options) selected(f *index.FileInfo) bool {
	return o.fileMatches(f) && o.fileSpan(f) != spanOutside
}

// inWindow reports whether a packet timestamp is in the window; a packet
// without one is (its file was already found to overlap the window).
func (o *Options) inWindow(ts time.Time) bool {
	if ts.IsZero() {
		return true
	}
	return (o.From.IsZero() || !ts.Before(o.From)) && (o.To.IsZero() || !ts.After(o.To))
}

// searcher carries one Search's state.
type searcher struct {
	opt    Options
	r      *recordReader
	frames frameDecoder
	sum    *Summary
	fn     func(Row) error
	// fnErr is fn's error, which stops the search.
	fnErr error
}

// emit passes a row on.
func (s *searcher) emit(r Row) error {
	if c := s.opt.Counts; c != nil {
		defer func(t0 time.Time) { c.Output += time.Since(t0) }(time.Now())
	}
	if err := s.fn(r); err != nil {
		s.fnErr = err
		return err
	}
	s.sum.Matched++
	return nil
}

// Search finds every packet whose values of the selected headers hold an
// address in the prefixes, restricted by the options: one Row per (address,
// packet, header), in file, offset, header and address order. It holds
// every row: SearchEach streams them.
func Search(store *index.Store, opt Options) (Result, error) {
	var res Result
	sum, err := SearchEach(store, opt, func(r Row) error {
		res.Rows = append(res.Rows, r)
		return nil
	})
	res.Summary = sum
	return res, err
}

// storeFor sets the options' sort memory, if any, on store (a Store
// holds state of its own and is not copied).
func (o *Options) storeFor(store *index.Store) *index.Store {
	if o.SortMem != 0 {
		store.SortMem = o.SortMem
	}
	return store
}

// SearchEach is Search calling fn with each row as soon as its packet is
// decoded, in Search's order, in memory that does not grow with the hits:
// the index look-up sorts them by file and offset in bounded memory
// (index.Store.LookupEach), and each capture is read front to back. fn
// returning an error stops the search with it.
func SearchEach(store *index.Store, opt Options, fn func(Row) error) (Summary, error) {
	var sum Summary
	if err := opt.Validate(); err != nil {
		return sum, err
	}
	if c := opt.Counts; c != nil {
		c.counting(store)
		defer func(t0 time.Time) { c.Total += time.Since(t0) }(time.Now())
	}
	s := &searcher{opt: opt, r: &recordReader{store: store, sum: &sum}, sum: &sum, fn: fn}
	defer s.r.close()
	var (
		file    *index.FileInfo // the capture being read
		fileErr error           // why it cannot be read
		errHits int             // its hits not shown for that
		packet  []index.Hit     // the hits of one packet and header
		prev    index.Hit
		any     bool
	)
	flushPacket := func() error {
		if len(packet) == 0 {
			return nil
		}
		if err := s.packet(packet); err != nil {
			if s.fnErr != nil {
				return s.fnErr
			}
			if errors.Is(err, ErrChanged) {
				// Nothing more of this file is shown.
				fileErr, errHits = ErrChanged, errHits+len(packet)
				packet = packet[:0]
				return nil
			}
			sum.Problems = append(sum.Problems, FileProblem{Path: packet[0].File.Path, Hits: len(packet), Err: err})
		}
		packet = packet[:0]
		return nil
	}
	endFile := func() {
		if fileErr != nil {
			sum.Problems = append(sum.Problems, FileProblem{Path: file.Path, Hits: errHits, Err: fileErr})
		}
		fileErr, errHits = nil, 0
	}
	info, err := opt.storeFor(store).LookupEach(opt.Prefixes, opt.headers(), func(h index.Hit) error {
		// Overlapping prefixes find a hit once per prefix: repeats are
		// neighbours.
		if any && prev.File == h.File && prev.Offset == h.Offset && prev.Header == h.Header && prev.Addr == h.Addr {
			return nil
		}
		prev, any = h, true
		if !opt.selected(h.File) || (opt.StartAt != nil && h.Offset < opt.StartAt(h.File)) {
			return nil
		}
		if h.File != file {
			if err := flushPacket(); err != nil {
				return err
			}
			endFile()
			file = h.File
			t0 := opt.Counts.now()
			fileErr = s.r.open(file)
			if c := opt.Counts; c != nil {
				c.Reads += time.Since(t0)
			}
		}
		if fileErr != nil {
			errHits++
			return nil
		}
		// The hits of one packet and header (one per address) share its
		// decoding.
		if len(packet) > 0 && (packet[0].Offset != h.Offset || packet[0].Header != h.Header) {
			if err := flushPacket(); err != nil {
				return err
			}
		}
		packet = append(packet, h)
		return nil
	})
	invalid, err := opt.invalidEntries(err)
	if err == nil {
		err = flushPacket()
	}
	if file != nil {
		endFile()
	}
	s.r.close() // counts what decompressing cost into sum
	sum.Problems = append(sum.Problems, invalid...)
	sum.Files, sum.Spills = info.Files, info.Spills
	if err != nil {
		return sum, err
	}
	sum.FewerHeaders, err = opt.fewerHeadersIn(store)
	return sum, err
}

// packet reads and decodes one packet record and emits a row for each of
// its hits, all of one header, that passes the options.
func (s *searcher) packet(hits []index.Hit) error {
	h := hits[0]
	c := s.opt.Counts
	t0 := c.now()
	rec, err := s.r.record(h.Offset)
	if c != nil {
		t1, out := time.Now(), c.Output
		c.Reads += t1.Sub(t0)
		c.Records++
		// Decoding is the rest of this call, less what the rows' consumer took.
		defer func() { c.Decode += time.Since(t1) - (c.Output - out) }()
	}
	if err != nil {
		return err
	}
	var ts time.Time
	if rec.TS != 0 {
		ts = time.Unix(0, rec.TS).UTC()
	}
	if !s.opt.inWindow(ts) {
		return nil // decided by the record header: no decoding
	}
	ft, payload, err := s.frames.decode(rec.LinkType, rec.Data)
	if err != nil {
		return fmt.Errorf("record at offset %d: %w", h.Offset, err)
	}
	digits := tsDigits(s.r.info, h.Offset, rec)
	if len(h.Requests) > 0 {
		return s.recordedRows(hits, ts, digits, ft)
	}
	var value []byte
	if h.Raw != nil {
		value = h.Raw
	} else {
		value = joinedValues(payload, h.Header)
	}
	pi := parsePacket(payload, h.Raw, h.Header)
	if !pi.heldBy(payload, hits) {
		// Other bytes sit at the offset than the build read (a capture
		// rewritten with its size and times kept): the rest of the file
		// cannot be trusted either.
		return fmt.Errorf("record at offset %d does not hold the indexed address: %w", h.Offset, ErrChanged)
	}
	for _, h := range hits {
		req := pi.requestOf(h.Addr)
		if s.opt.ClientOnly {
			verdict, of := s.clientVerdict(&pi, h.Addr)
			switch verdict {
			case clientNo:
				continue
			case clientUndecided:
				s.sum.Undecided++
				continue
			}
			req = of // the request where it is the client
		}
		row := Row{XFFIP: h.Addr, XFF: value, Header: h.Header, File: h.File.Path, Offset: h.Offset, TS: ts, TSDigit: digits, FiveTuple: ft, conn: h.ConnStart, connSYN: h.ConnSYN, FileID: h.File.ID, Pos: h.Pos}
		if req != nil && !req.Cont {
			row.Request = Request{Method: bytes.Clone(req.Method), Host: bytes.Clone(req.Host), Path: bytes.Clone(req.Target)}
		}
		if err := s.emit(row); err != nil {
			return err
		}
	}
	return nil
}

// recordedRows makes the rows of a packet whose requests the build
// recorded (a header block spread over several TCP segments): the request
// of each hit is the recorded one whose list holds the address, with its
// method, Host and target, and its whole list as the value.
func (s *searcher) recordedRows(hits []index.Hit, ts time.Time, digits int, ft FiveTuple) error {
	reqs := make([]recorded, len(hits[0].Requests))
	provisional := false
	for i := range reqs {
		reqs[i].r = &hits[0].Requests[i]
		provisional = provisional || !reqs[i].r.Complete
	}
	for _, h := range hits {
		var q *recorded
		for i := range reqs {
			if reqs[i].holds(h.Header, h.Addr) {
				if q == nil {
					q = &reqs[i]
				}
				if s.opt.ClientOnly {
					if c := reqs[i].clientOf(h.Header, s.opt.Trusted); c.ok && c.addr == h.Addr {
						q = &reqs[i]
						break
					}
				}
			}
		}
		if s.opt.ClientOnly {
			switch c := q.clientOfOrNil(h.Header, s.opt.Trusted); {
			case c == nil:
				s.sum.Undecided++
				continue
			case c.undecided:
				s.sum.Undecided++
				continue
			case !c.ok || c.addr != h.Addr:
				continue
			}
		}
		row := Row{XFFIP: h.Addr, Header: h.Header, File: h.File.Path, Offset: h.Offset, TS: ts, TSDigit: digits, FiveTuple: ft, conn: h.ConnStart, connSYN: h.ConnSYN, FileID: h.File.ID, Pos: h.Pos, Provisional: provisional}
		if q != nil {
			row.XFF = bytes.Clone(q.r.Lists[h.Header])
			row.Request = Request{Method: bytes.Clone(q.r.Method), Host: bytes.Clone(q.r.Host), Path: bytes.Clone(q.r.Target)}
		}
		if err := s.emit(row); err != nil {
			return err
		}
	}
	return nil
}

// text renders the request for the table: "GET host/path", the target alone
// when it is not a path (absolute form, "*", CONNECT's authority).
func (q Request) text() []byte {
	if len(q.Method) == 0 && len(q.Host) == 0 && len(q.Path) == 0 {
		return nil
	}
	b := append([]byte(nil), q.Method...)
	if len(b) > 0 {
		b = append(b, ' ')
	}
	if len(q.Path) == 0 || q.Path[0] == '/' {
		b = append(b, q.Host...)
	}
	return append(b, q.Path...)
}
