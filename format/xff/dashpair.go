package xff

// The build's hot loop looks at every byte of every packet for the header
// name. Every spelling of "x-forwarded-for:" has a '-' at offsets 1 and 11,
// and a pair of dashes ten bytes apart is rare in binary payloads (1 in
// 65536 positions) where a single '-' is not (1 in 256). indexDashPair finds
// such pairs; on amd64 with AVX2 it compares 32 positions per step.

// dashGap is the distance between the two dashes of the header name.
const dashGap = 10

// indexDashPairGeneric returns the first i with b[i] == '-' and
// b[i+dashGap] == '-', or -1.
func indexDashPairGeneric(b []byte) int {
	for i := 0; i+dashGap < len(b); i++ {
		if b[i] == '-' && b[i+dashGap] == '-' {
			return i
		}
	}
	return -1
}
