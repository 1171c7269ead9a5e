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
	// ClientOnly keeps a hit only when the address is the right-most entry
	// of its request's list (of the hit's header) that is not in Trusted
	// (see ClientAddr).
	ClientOnly bool
	Trusted    []netip.Prefix
	// Headers selects the forwarding headers searched; the zero value means
	// X-Forwarded-For alone.
	Headers xff.HeaderSet
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
	if len(o.Files) == 0 {
		return true
	}
	for _, g := range o.Files {
		if ok, _ := path.Match(g, f.Path); ok {
			return true
		}
		if ok, _ := path.Match(g, filepath.Base(f.Path)); ok {
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
	opt Options
	r   *recordReader
}

// Search finds every packet whose values of the selected headers hold an
// address in the prefixes, restricted by the options: one Row per (address,
// packet, header), in file, offset, header and address order.
func Search(store *index.Store, opt Options) (Result, error) {
	if err := opt.Validate(); err != nil {
		return Result{}, err
	}
	hits, files, err := store.Lookup(opt.Prefixes, opt.headers())
	invalid, err := opt.invalidEntries(err)
	if err != nil {
		return Result{}, err
	}
	// Overlapping prefixes find a hit once per prefix; hits are sorted by
	// file, offset and address, so repeats are neighbours.
	kept := hits[:0]
	for i, h := range hits {
		if i > 0 && hits[i-1].File.Path == h.File.Path && hits[i-1].Offset == h.Offset && hits[i-1].Header == h.Header && hits[i-1].Addr == h.Addr {
			continue
		}
		if !opt.selected(h.File) {
			continue
		}
		kept = append(kept, h)
	}
	hits = kept

	res := Result{Files: files, Problems: invalid}
	if res.FewerHeaders, err = opt.fewerHeadersIn(store); err != nil {
		return Result{}, err
	}
	s := &searcher{opt: opt, r: &recordReader{}}
	defer s.r.close()
	for i := 0; i < len(hits); {
		j := i
		for j < len(hits) && hits[j].File == hits[i].File {
			j++
		}
		if err := s.r.open(hits[i].File); err != nil {
			res.Problems = append(res.Problems, FileProblem{Path: hits[i].File.Path, Hits: j - i, Err: err})
			i = j
			continue
		}
		for k := i; k < j; {
			// The hits of one packet and header (one per address) share
			// its decoding.
			l := k
			for l < j && hits[l].Offset == hits[k].Offset && hits[l].Header == hits[k].Header {
				l++
			}
			if err := s.packet(hits[k:l], &res); err != nil {
				res.Problems = append(res.Problems, FileProblem{Path: hits[k].File.Path, Hits: l - k, Err: err})
			}
			k = l
		}
		i = j
	}
	return res, nil
}

// packet reads and decodes one packet record and appends a row for each of
// its hits, all of one header, that passes the options.
func (s *searcher) packet(hits []index.Hit, res *Result) error {
	h := hits[0]
	rec, err := s.r.record(h.Offset)
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
	ft, payload, err := DecodeFrame(rec.LinkType, rec.Data)
	if err != nil {
		return fmt.Errorf("record at offset %d: %w", h.Offset, err)
	}
	digits := tsDigits(s.r.info, h.Offset, rec)
	if len(h.Requests) > 0 {
		s.recordedRows(hits, ts, digits, ft, res)
		return nil
	}
	var value []byte
	if h.Raw != nil {
		value = h.Raw
	} else {
		value = joinedValues(payload, h.Header)
	}
	pi := parsePacket(payload, h.Raw, h.Header)
	for _, h := range hits {
		req := pi.requestOf(h.Addr)
		if s.opt.ClientOnly {
			verdict, of := s.clientVerdict(&pi, h.Addr)
			switch verdict {
			case clientNo:
				continue
			case clientUndecided:
				res.Undecided++
				continue
			}
			req = of // the request where it is the client
		}
		row := Row{XFFIP: h.Addr, XFF: value, Header: h.Header, File: h.File.Path, Offset: h.Offset, TS: ts, TSDigit: digits, FiveTuple: ft, conn: h.ConnStart, connSYN: h.ConnSYN}
		if req != nil && !req.Cont {
			row.Request = Request{Method: bytes.Clone(req.Method), Host: bytes.Clone(req.Host), Path: bytes.Clone(req.Target)}
		}
		res.Rows = append(res.Rows, row)
	}
	return nil
}

// recordedRows makes the rows of a packet whose requests the build
// recorded (a header block spread over several TCP segments): the request
// of each hit is the recorded one whose list holds the address, with its
// method, Host and target, and its whole list as the value.
func (s *searcher) recordedRows(hits []index.Hit, ts time.Time, digits int, ft FiveTuple, res *Result) {
	reqs := make([]recorded, len(hits[0].Requests))
	for i := range reqs {
		reqs[i].r = &hits[0].Requests[i]
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
				res.Undecided++
				continue
			case c.undecided:
				res.Undecided++
				continue
			case !c.ok || c.addr != h.Addr:
				continue
			}
		}
		row := Row{XFFIP: h.Addr, Header: h.Header, File: h.File.Path, Offset: h.Offset, TS: ts, TSDigit: digits, FiveTuple: ft, conn: h.ConnStart, connSYN: h.ConnSYN}
		if q != nil {
			row.XFF = bytes.Clone(q.r.Lists[h.Header])
			row.Request = Request{Method: bytes.Clone(q.r.Method), Host: bytes.Clone(q.r.Host), Path: bytes.Clone(q.r.Target)}
		}
		res.Rows = append(res.Rows, row)
	}
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
