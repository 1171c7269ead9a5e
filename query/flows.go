package query

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
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
func Flows(rows []Row) []Flow {
	type pkt struct {
		file string
		off  int64
	}
	idx := map[flowKey]int{}
	var flows []Flow
	seen := map[pkt]bool{}
	files := map[flowKey]map[string]bool{}
	addrs := map[flowKey]map[netip.Addr]bool{}
	for _, r := range rows {
		k := keyOf(r.FiveTuple)
		i, ok := idx[k]
		if !ok {
			i = len(flows)
			idx[k] = i
			flows = append(flows, Flow{FiveTuple: r.FiveTuple})
			files[k], addrs[k] = map[string]bool{}, map[netip.Addr]bool{}
		}
		f := &flows[i]
		addrs[k][r.XFFIP] = true
		if seen[pkt{r.File, r.Offset}] {
			continue
		}
		seen[pkt{r.File, r.Offset}] = true
		f.Hits++
		files[k][r.File] = true
		if r.TS.IsZero() {
			continue
		}
		if f.First.IsZero() || r.TS.Before(f.First) {
			f.First, f.FirstDigit = r.TS, r.TSDigit
			f.FiveTuple = r.FiveTuple // the direction of the first packet
		}
		if f.Last.IsZero() || r.TS.After(f.Last) {
			f.Last, f.LastDigit = r.TS, r.TSDigit
		}
	}
	for i := range flows {
		k := keyOf(flows[i].FiveTuple)
		for p := range files[k] {
			flows[i].Files = append(flows[i].Files, p)
		}
		slices.Sort(flows[i].Files)
		for a := range addrs[k] {
			flows[i].XFFIPs = append(flows[i].XFFIPs, a)
		}
		slices.SortFunc(flows[i].XFFIPs, netip.Addr.Compare)
	}
	slices.SortFunc(flows, func(a, b Flow) int {
		if a.First.IsZero() != b.First.IsZero() {
			if a.First.IsZero() {
				return 1
			}
			return -1
		}
		return cmp.Or(a.First.Compare(b.First),
			a.SrcIP.Compare(b.SrcIP), cmp.Compare(a.SrcPort, b.SrcPort),
			a.DstIP.Compare(b.DstIP), cmp.Compare(a.DstPort, b.DstPort),
			strings.Compare(a.Proto, b.Proto))
	})
	return flows
}

// WiresharkFilter returns a display filter selecting exactly the packets of
// the flows' connections, both directions: one clause per flow,
// "(ip.addr==A && ip.addr==B && tcp.port==P && tcp.port==Q)" (ipv6.addr for
// IPv6), joined with " || ". Wireshark applies ip.addr and tcp.port to every
// IP and TCP header of a packet, outer ones of a tunnel included; the
// addresses and ports are those of the innermost connection. Empty for no
// flows.
func WiresharkFilter(flows []Flow) string {
	var b strings.Builder
	seen := map[flowKey]bool{}
	for _, f := range flows {
		k := keyOf(f.FiveTuple)
		if seen[k] {
			continue
		}
		seen[k] = true
		if b.Len() > 0 {
			b.WriteString(" || ")
		}
		fam := "ip"
		if f.SrcIP.Is6() {
			fam = "ipv6"
		}
		fmt.Fprintf(&b, "(%s.addr==%s && %s.addr==%s && %s.port==%d && %s.port==%d)",
			fam, f.SrcIP, fam, f.DstIP, f.Proto, f.SrcPort, f.Proto, f.DstPort)
	}
	return b.String()
}

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
}

// listSep separates the entries of a list in one CSV or table cell.
const listSep = ";"

// WriteFlows prints flows in the given format: NDJSON with the fields of
// jsonFlow; CSV with the same columns (the lists joined with ";"); a table.
// File names are Sanitized in each.
func WriteFlows(out io.Writer, format string, flows []Flow) error {
	return buffered(out, func(w io.Writer) error { return writeFlows(w, format, flows) })
}

func writeFlows(w io.Writer, format string, flows []Flow) error {
	addrStrings := func(as []netip.Addr) []string {
		out := make([]string, len(as))
		for i, a := range as {
			out[i] = a.String()
		}
		return out
	}
	sanitized := func(ss []string, max int) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = Sanitize([]byte(s), max)
		}
		return out
	}
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, f := range flows {
			if err := enc.Encode(jsonFlow{
				SrcIP: f.SrcIP.String(), SrcPort: f.SrcPort, DstIP: f.DstIP.String(), DstPort: f.DstPort, Proto: f.Proto,
				FirstTS: FormatTS(f.First, f.FirstDigit), LastTS: FormatTS(f.Last, f.LastDigit), Hits: f.Hits,
				Files: sanitized(f.Files, uncapped), XFFIPs: addrStrings(f.XFFIPs),
			}); err != nil {
				return err
			}
		}
		return nil
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.UseCRLF = true
		cw.Write([]string{"src_ip", "src_port", "dst_ip", "dst_port", "proto", "first_ts", "last_ts", "hits", "files", "xff_ips"})
		for _, f := range flows {
			cw.Write([]string{
				f.SrcIP.String(), strconv.Itoa(int(f.SrcPort)), f.DstIP.String(), strconv.Itoa(int(f.DstPort)), f.Proto,
				FormatTS(f.First, f.FirstDigit), FormatTS(f.Last, f.LastDigit), strconv.Itoa(f.Hits),
				csvText([]byte(strings.Join(f.Files, listSep))), strings.Join(addrStrings(f.XFFIPs), listSep),
			})
		}
		cw.Flush()
		return cw.Error()
	case FormatTable:
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "FIRST\tLAST\tSRC\tDST\tPROTO\tHITS\tXFF_IPS\tFILES")
		for _, f := range flows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n",
				FormatTS(f.First, f.FirstDigit), FormatTS(f.Last, f.LastDigit),
				addrPort(f.SrcIP.String(), f.SrcPort), addrPort(f.DstIP.String(), f.DstPort), f.Proto, f.Hits,
				strings.Join(addrStrings(f.XFFIPs), listSep), strings.Join(sanitized(f.Files, 256), listSep))
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown output format %q (want table, json or csv)", format)
}
