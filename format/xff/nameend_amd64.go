package xff

import "golang.org/x/sys/cpu"

var useAVX2 = cpu.X86.HasAVX2

// indexNameEndAVX2 is indexNameEndGeneric in AVX2 assembly.
//
//go:noescape
func indexNameEndAVX2(b []byte) int

// indexNameEnd returns the first i at which a header name ending ("-for:",
// "-ip:" or "ed:", any case) starts, or -1.
func indexNameEnd(b []byte) int {
	if useAVX2 {
		return indexNameEndAVX2(b)
	}
	return indexNameEndGeneric(b)
}
