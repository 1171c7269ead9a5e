package xff

import "golang.org/x/sys/cpu"

var useAVX2 = cpu.X86.HasAVX2

// indexDashPairAVX2 is indexDashPairGeneric in AVX2 assembly.
//
//go:noescape
func indexDashPairAVX2(b []byte) int

func indexDashPair(b []byte) int {
	if useAVX2 {
		return indexDashPairAVX2(b)
	}
	return indexDashPairGeneric(b)
}
