package index

import (
	"bytes"
	"net/netip"
	"slices"
)

// keyRange is a range [lo, hi) of hit keys.
type keyRange struct{ lo, hi []byte }

// hitRanges returns the hit-key ranges of prefixes (PrefixRange) in key
// order, overlapping ones merged, so that one forward pass over them reads
// each hit once, in key order, however many prefixes a list names and in
// whatever order.
func hitRanges(prefixes []netip.Prefix) []keyRange {
	rs := make([]keyRange, 0, len(prefixes))
	for _, p := range prefixes {
		lo, hi := PrefixRange(p)
		rs = append(rs, keyRange{lo, hi})
	}
	slices.SortFunc(rs, func(a, b keyRange) int { return bytes.Compare(a.lo, b.lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && bytes.Compare(r.lo, out[n-1].hi) <= 0 {
			if bytes.Compare(r.hi, out[n-1].hi) > 0 {
				out[n-1].hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// MergedPrefixRanges returns the hit-key ranges [los[i], his[i]) of
// prefixes as one forward pass reads them: in key order, overlapping and
// adjacent ones merged (hitRanges).
func MergedPrefixRanges(prefixes []netip.Prefix) (los, his [][]byte) {
	for _, r := range hitRanges(prefixes) {
		los, his = append(los, r.lo), append(his, r.hi)
	}
	return los, his
}
