package query

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/index/extsort"
)

// Flow is one connection (innermost TCP 5-tuple) among the rows of a
// search, with what its matching packets have in common.
type Flow struct {
	// FiveTuple in the direction of the flow's first matching packet (the
	// request direction: proxy to backend).
	FiveTuple
	// First and Last timestamp of the matching packets (zero if none has one),
	// with the fractional digits their captures record.
	First, Last           time.Time
	FirstDigit, LastDigit int
	Hits                  int          // matching packets (a packet with several matching addresses counts once)
	Files                 []string     // captures holding them, sorted
	XFFIPs                []netip.Addr // matching XFF addresses, sorted
	// Sensor holds the flow's packets, in answers from a central store
	// (package fleet): the same 5-tuple on two sensors is two flows.
	Sensor string
}

// flowKey identifies a connection whichever way its packets go.
type flowKey struct {
	lo, hi netip.AddrPort
	proto  string
}

func keyOf(ft FiveTuple) flowKey {
	a, b := netip.AddrPortFrom(ft.SrcIP, ft.SrcPort), netip.AddrPortFrom(ft.DstIP, ft.DstPort)
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	return flowKey{a, b, ft.Proto}
}

// Flows groups rows by connection: the innermost 5-tuple, either direction.
// A connection whose ports were reused later in the capture is one flow.
// Flows are ordered by first timestamp (flows without one last), then tuple.
// It holds them all: SearchFlows streams them.
func Flows(rows []Row) []Flow {
	a := newFlowAggregator(0, "")
	defer a.close()
	var flows []Flow
	for _, r := range rows {
		if err := a.add(r); err != nil {
			return nil
		}
	}
	a.each(func(f Flow) error {
		flows = append(flows, f)
		return nil
	})
	return flows
}

// SearchFlows runs the search and calls fn with its rows grouped by
// connection, as Flows groups them, in memory that does not grow with
// the hits nor the flows: the rows, then the flows, are sorted in bounded
// memory (Options.SortMem) and spill to temporary files past it.
func SearchFlows(store *index.Store, opt Options, fn func(Flow) error) (Summary, error) {
	a := newFlowAggregator(opt.SortMem, "")
	defer a.close()
	sum, err := SearchEach(store, opt, a.add)
	if err != nil {
		return sum, err
	}
	err = a.each(fn)
	sum.Spills += a.spills()
	return sum, err
}

// GroupFlows groups the rows that rowsOf passes to add by connection (and
// sensor), as SearchFlows groups a search's, in the same bounded memory, and
// calls fn with each flow: for rows that come from elsewhere (a central
// store).
func GroupFlows(sortMem int, rowsOf func(add func(Row) error) error, fn func(Flow) error) error {
	a := newFlowAggregator(sortMem, "")
	defer a.close()
	if err := rowsOf(a.add); err != nil {
		return err
	}
	return a.each(fn)
}

// flowAggregator groups rows by connection in bounded memory: each row is
// a record sorted by connection, then file, offset and arrival; the
// records of one connection make a Flow, and the flows are sorted again
// by first timestamp and tuple.
type flowAggregator struct {
	rows, flows *extsort.Sorter
	seq         uint64
	rec         []byte
}

func newFlowAggregator(mem int, dir string) *flowAggregator {
	return &flowAggregator{rows: extsort.New(bytes.Compare, mem, dir), flows: extsort.New(bytes.Compare, mem, dir)}
}

func (a *flowAggregator) close() {
	a.rows.Close()
	a.flows.Close()
}

func (a *flowAggregator) spills() int { return a.rows.Spills() + a.flows.Spills() }

// add takes a row: key (connection, file, offset, arrival), then the
// direction of its tuple, its timestamp and digits, and its address.
func (a *flowAggregator) add(r Row) error {
	k := keyOf(r.FiveTuple)
	b := appendKey(appendString(a.rec[:0], r.Sensor), k)
	b = appendString(b, r.File)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Offset))
	b = binary.BigEndian.AppendUint64(b, a.seq)
	a.seq++
	forward := byte(0)
	if netip.AddrPortFrom(r.SrcIP, r.SrcPort) == k.lo {
		forward = 1
	}
	b = appendTime(append(b, forward), r.TS)
	b = appendAddr(append(b, byte(r.TSDigit)), r.XFFIP)
	a.rec = b
	return a.rows.Add(b)
}

// each makes the flows and calls fn with each, in order.
func (a *flowAggregator) each(fn func(Flow) error) error {
	var (
		cur               *Flow
		curKey            []byte
		lastFile          string
		lastOff           int64
		haveFile, haveOff bool
	)
	finish := func() error {
		if cur == nil {
			return nil
		}
		slices.SortFunc(cur.XFFIPs, netip.Addr.Compare)
		cur.XFFIPs = slices.Compact(cur.XFFIPs)
		err := a.flows.Add(appendFlow(a.rec[:0], cur))
		cur = nil
		return err
	}
	err := a.rows.Each(func(rec []byte) error {
		r := recReader{b: rec}
		sensor := r.string()
		k := r.key()
		keyBytes := rec[:len(rec)-len(r.b)]
		file := r.string()
		off := int64(r.uint64())
		r.uint64() // arrival
		forward := r.byte() == 1
		ts := r.time()
		digits := int(r.byte())
		addr := r.addr()
		if r.err != nil {
			return r.err
		}
		ft := FiveTuple{SrcIP: k.lo.Addr(), SrcPort: k.lo.Port(), DstIP: k.hi.Addr(), DstPort: k.hi.Port(), Proto: k.proto}
		if !forward {
			ft.SrcIP, ft.SrcPort, ft.DstIP, ft.DstPort = ft.DstIP, ft.DstPort, ft.SrcIP, ft.SrcPort
		}
		if cur == nil || !bytes.Equal(curKey, keyBytes) {
			if err := finish(); err != nil {
				return err
			}
			cur, curKey = &Flow{FiveTuple: ft, Sensor: sensor}, append(curKey[:0], keyBytes...)
			haveFile, haveOff = false, false
		}
		cur.XFFIPs = append(cur.XFFIPs, addr)
		// A packet with several matching addresses (or headers) counts
		// once: its rows are neighbours.
		if haveOff && file == lastFile && off == lastOff {
			return nil
		}
		if !haveFile || file != lastFile {
			cur.Files = append(cur.Files, file)
		}
		lastFile, lastOff, haveFile, haveOff = file, off, true, true
		cur.Hits++
		if ts.IsZero() {
			return nil
		}
		if cur.First.IsZero() || ts.Before(cur.First) {
			cur.First, cur.FirstDigit = ts, digits
			cur.FiveTuple = ft // the direction of the first packet
		}
		if cur.Last.IsZero() || ts.After(cur.Last) {
			cur.Last, cur.LastDigit = ts, digits
		}
		return nil
	})
	if err == nil {
		err = finish()
	}
	if err != nil {
		return err
	}
	return a.flows.Each(func(rec []byte) error {
		f, err := readFlow(rec)
		if err != nil {
			return err
		}
		return fn(f)
	})
}

// appendFlow encodes a flow for the sort of flows: first timestamp (none
// last) and tuple, then the rest.
func appendFlow(b []byte, f *Flow) []byte {
	b = appendTime(b, f.First)
	b = appendAddrPort(b, netip.AddrPortFrom(f.SrcIP, f.SrcPort))
	b = appendAddrPort(b, netip.AddrPortFrom(f.DstIP, f.DstPort))
	b = appendString(b, f.Proto)
	b = appendString(b, f.Sensor)
	b = appendTime(b, f.Last)
	b = append(b, byte(f.FirstDigit), byte(f.LastDigit))
	b = binary.AppendUvarint(b, uint64(f.Hits))
	b = binary.AppendUvarint(b, uint64(len(f.Files)))
	for _, p := range f.Files {
		b = appendString(b, p)
	}
	b = binary.AppendUvarint(b, uint64(len(f.XFFIPs)))
	for _, a := range f.XFFIPs {
		b = appendAddr(b, a)
	}
	return b
}

func readFlow(rec []byte) (Flow, error) {
	r := recReader{b: rec}
	var f Flow
	f.First = r.time()
	src, dst := r.addrPort(), r.addrPort()
	f.FiveTuple = FiveTuple{SrcIP: src.Addr(), SrcPort: src.Port(), DstIP: dst.Addr(), DstPort: dst.Port(), Proto: r.string()}
	f.Sensor = r.string()
	f.Last = r.time()
	f.FirstDigit, f.LastDigit = int(r.byte()), int(r.byte())
	f.Hits = int(r.uvarint())
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		f.Files = append(f.Files, r.string())
	}
	n = r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		f.XFFIPs = append(f.XFFIPs, r.addr())
	}
	return f, r.err
}

// WiresharkFilter returns a display filter selecting exactly the packets of
// the flows' connections, both directions: one clause per flow,
// "(ip.addr==A && ip.addr==B && tcp.port==P && tcp.port==Q)" (ipv6.addr for
// IPv6), joined with " || ". Wireshark applies ip.addr and tcp.port to every
// IP and TCP header of a packet, outer ones of a tunnel included; the
// addresses and ports are those of the innermost connection. Empty for no
// flows. (FormatFilter writes the same as flows come.)
func WiresharkFilter(flows []Flow) string {
	var b strings.Builder
	w, _ := NewFlowWriter(&b, FormatFilter)
	seen := map[flowKey]bool{}
	for _, f := range flows {
		if k := keyOf(f.FiveTuple); !seen[k] {
			seen[k] = true
			w.Write(f)
		}
	}
	w.Close()
	return strings.TrimSuffix(b.String(), "\n")
}

// FormatFilter is FlowWriter's format for --wireshark-filter.
const FormatFilter = "wireshark-filter"

// jsonFlow fixes the NDJSON shape of --flows.
type jsonFlow struct {
	SrcIP   string   `json:"src_ip"`
	SrcPort uint16   `json:"src_port"`
	DstIP   string   `json:"dst_ip"`
	DstPort uint16   `json:"dst_port"`
	Proto   string   `json:"proto"`
	FirstTS string   `json:"first_ts"`
	LastTS  string   `json:"last_ts"`
	Hits    int      `json:"hits"`
	Files   []string `json:"files"`
	XFFIPs  []string `json:"xff_ips"`
	Sensor  string   `json:"sensor,omitempty"`
}

// listSep separates the entries of a list in one CSV or table cell.
const listSep = ";"

// WriteFlows prints flows in the given format (see FlowWriter).
func WriteFlows(out io.Writer, format string, flows []Flow) error {
	w, err := NewFlowWriter(out, format)
	if err != nil {
		return err
	}
	for _, f := range flows {
		if err := w.Write(f); err != nil {
			return err
		}
	}
	return w.Close()
}

// FlowWriter prints flows one at a time, through a 64 KiB buffer: NDJSON
// with the fields of jsonFlow; CSV with the same columns (the lists joined
// with ";"); a table; or (FormatFilter) a Wireshark display filter, one
// clause per flow, on one line. File names are Sanitized in each.
type FlowWriter struct {
	bw         *bufio.Writer
	showSensor bool
	format     string
	enc        *json.Encoder
	cw         *csv.Writer
	tab        *table
	n          int
}

// NewFlowWriter starts the output: the CSV header row, or the table's.
func NewFlowWriter(out io.Writer, format string) (*FlowWriter, error) {
	return newFlowWriter(out, format, false)
}

// NewSensorFlowWriter is NewFlowWriter for flows from a central store: each
// names its sensor (a "sensor" JSON field, a last CSV column, a first
// SENSOR table column).
func NewSensorFlowWriter(out io.Writer, format string) (*FlowWriter, error) {
	return newFlowWriter(out, format, true)
}

func newFlowWriter(out io.Writer, format string, showSensor bool) (*FlowWriter, error) {
	w := &FlowWriter{bw: bufio.NewWriterSize(out, 64<<10), format: format, showSensor: showSensor}
	switch format {
	case FormatJSON:
		w.enc = json.NewEncoder(w.bw)
		w.enc.SetEscapeHTML(false)
	case FormatCSV:
		w.cw = csv.NewWriter(w.bw)
		w.cw.UseCRLF = true
		head := []string{"src_ip", "src_port", "dst_ip", "dst_port", "proto", "first_ts", "last_ts", "hits", "files", "xff_ips"}
		if showSensor {
			head = append(head, "sensor")
		}
		w.cw.Write(head)
	case FormatTable:
		w.tab = &table{w: w.bw}
		head := []string{"FIRST", "LAST", "SRC", "DST", "PROTO", "HITS", "XFF_IPS", "FILES"}
		if showSensor {
			head = append([]string{"SENSOR"}, head...)
		}
		w.tab.row(head...)
	case FormatFilter:
	default:
		return nil, fmt.Errorf("unknown output format %q (want table, json or csv)", format)
	}
	return w, nil
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func sanitized(ss []string, max int) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = Sanitize([]byte(s), max)
	}
	return out
}

// Write prints one flow.
func (w *FlowWriter) Write(f Flow) error {
	w.n++
	switch w.format {
	case FormatJSON:
		return w.enc.Encode(jsonFlow{
			SrcIP: f.SrcIP.String(), SrcPort: f.SrcPort, DstIP: f.DstIP.String(), DstPort: f.DstPort, Proto: f.Proto,
			FirstTS: FormatTS(f.First, f.FirstDigit), LastTS: FormatTS(f.Last, f.LastDigit), Hits: f.Hits,
			Files: sanitized(f.Files, uncapped), XFFIPs: addrStrings(f.XFFIPs), Sensor: w.sensor(f),
		})
	case FormatCSV:
		rec := []string{
			f.SrcIP.String(), strconv.Itoa(int(f.SrcPort)), f.DstIP.String(), strconv.Itoa(int(f.DstPort)), f.Proto,
			FormatTS(f.First, f.FirstDigit), FormatTS(f.Last, f.LastDigit), strconv.Itoa(f.Hits),
			csvText([]byte(strings.Join(f.Files, listSep))), strings.Join(addrStrings(f.XFFIPs), listSep),
		}
		if w.showSensor {
			rec = append(rec, csvText([]byte(f.Sensor)))
		}
		return w.cw.Write(rec)
	case FormatTable:
		var cells []string
		if w.showSensor {
			cells = append(cells, Sanitize([]byte(f.Sensor), 64))
		}
		return w.tab.row(append(cells, FormatTS(f.First, f.FirstDigit), FormatTS(f.Last, f.LastDigit),
			addrPort(f.SrcIP.String(), f.SrcPort), addrPort(f.DstIP.String(), f.DstPort), f.Proto, strconv.Itoa(f.Hits),
			strings.Join(addrStrings(f.XFFIPs), listSep), strings.Join(sanitized(f.Files, 256), listSep))...)
	}
	if w.n > 1 {
		w.bw.WriteString(" || ")
	}
	fam := "ip"
	if f.SrcIP.Is6() {
		fam = "ipv6"
	}
	_, err := fmt.Fprintf(w.bw, "(%s.addr==%s && %s.addr==%s && %s.port==%d && %s.port==%d)",
		fam, f.SrcIP, fam, f.DstIP, f.Proto, f.SrcPort, f.Proto, f.DstPort)
	return err
}

func (w *FlowWriter) sensor(f Flow) string {
	if !w.showSensor {
		return ""
	}
	return Sanitize([]byte(f.Sensor), uncapped)
}

// Close ends the output (the filter's line) and flushes it.
func (w *FlowWriter) Close() error {
	switch {
	case w.cw != nil:
		w.cw.Flush()
		if err := w.cw.Error(); err != nil {
			return err
		}
	case w.tab != nil:
		w.tab.flush()
	case w.format == FormatFilter && w.n > 0:
		w.bw.WriteString("\n")
	}
	return w.bw.Flush()
}
