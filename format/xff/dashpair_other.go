//go:build !amd64

package xff

func indexDashPair(b []byte) int {
	return indexDashPairGeneric(b)
}
