//go:build !amd64

package xff

// indexNameEnd returns the first i at which a header name ending ("-for:",
// "-ip:" or "ed:", any case) starts, or -1.
func indexNameEnd(b []byte) int {
	return indexNameEndGeneric(b)
}
