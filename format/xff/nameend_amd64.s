#include "textflag.h"

// func indexNameEndAVX2(b []byte) int
// Returns the first i with b[i+4] == ':' and one of
//	b[i] == '-' && b[i+3]|0x20 == 'r'
//	b[i+1] == '-' && b[i+3]|0x20 == 'p'
//	b[i+2]|0x20 == 'e' && b[i+3]|0x20 == 'd'
// or -1.
//
// The test runs in two stages. The first, 5 instructions per 32 positions,
// keeps the positions with a colon at i+4 and one of r, p, d (any case) at
// i+3: 1 in 11000 positions of random bytes, so that 64 positions at a time
// almost always pass on. The few blocks with such a position take the second
// stage, which checks the byte the letter at i+3 asks for, picking it with
// two blends: b[i] for 'r' (bit 1 of the letter set), b[i+2] for 'd' (bit 2
// set), else b[i+1].

// nameEndClass maps the low nibble of a (folded) byte to the one letter of
// r, p, d with that nibble, or to 0xff, which no folded byte below 0x80 with
// that nibble equals. VPSHUFB gives 0 for bytes from 0x80, which no folded
// byte (bit 5 set) equals either.
DATA nameEndClass<>+0(SB)/8, $0xffffff64ff72ff70
DATA nameEndClass<>+8(SB)/8, $0xffffffffffffffff
DATA nameEndClass<>+16(SB)/8, $0xffffff64ff72ff70
DATA nameEndClass<>+24(SB)/8, $0xffffffffffffffff
GLOBL nameEndClass<>(SB), RODATA|NOPTR, $32

// nameEndBytes holds the bytes the routine broadcasts: the case bit 0x20,
// ':', '-', and 'e' ^ '-'.
DATA nameEndBytes<>+0(SB)/4, $0x482d3a20
GLOBL nameEndBytes<>(SB), RODATA|NOPTR, $4

// NAMEEND1 sets K to the first-stage mask of the 32 positions at off(DI),
// and T to their b[i+3]|0x20. C is a temporary.
#define NAMEEND1(off, T, K, C) \
	VPOR     off+3(DI), Y15, T; \
	VPSHUFB  T, Y12, K; \
	VPCMPEQB T, K, K; \
	VPCMPEQB off+4(DI), Y14, C; \
	VPAND    C, K, K

// NAMEEND2 narrows K, from NAMEEND1, to the full match. It clobbers T; V and
// W are temporaries.
#define NAMEEND2(off, T, K, V, W) \
	VMOVDQU   off+1(DI), V; \
	VPSLLW    $6, T, W; \
	VPBLENDVB W, off+0(DI), V, V; \
	VPSLLW    $5, T, T; \
	VPOR      off+2(DI), Y15, W; \
	VPXOR     Y11, W, W; \
	VPBLENDVB T, W, V, V; \
	VPCMPEQB  Y13, V, V; \
	VPAND     V, K, K

TEXT ·indexNameEndAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	SUBQ $4, CX             // CX = number of candidate positions
	JLE  notfound1
	MOVQ SI, DI             // DI = &b[i]
	LEAQ (SI)(CX*1), R10    // R10 = &b[CX], the end of the positions
	CMPQ CX, $32
	JB   tail

	// Broadcasts from memory: a legacy-SSE MOVD into an X register after a
	// Y register is written costs a state transition (about 70 cycles each
	// on the test machine).
	VPBROADCASTB nameEndBytes<>+0(SB), Y15 // case bit
	VPBROADCASTB nameEndBytes<>+1(SB), Y14 // ':'
	VPBROADCASTB nameEndBytes<>+2(SB), Y13 // '-'
	VPBROADCASTB nameEndBytes<>+3(SB), Y11 // 'e' ^ '-'
	VMOVDQU      nameEndClass<>(SB), Y12

	LEAQ -64(R10), R8       // last start of 64 positions
	CMPQ DI, R8
	JA   last

loop64:
	NAMEEND1(0, Y1, Y2, Y3)
	NAMEEND1(32, Y4, Y5, Y6)
	VPOR   Y2, Y5, Y0
	VPTEST Y0, Y0
	JNZ    check64
next64:
	ADDQ $64, DI
	CMPQ DI, R8
	JBE  loop64

last:
	// Fewer than 64 positions are left, and there are 32 in all: check 32,
	// if there are, and then the last 32, overlapping. Those already
	// checked hold no match, so any match found there is the first.
	LEAQ -32(R10), R8
	CMPQ DI, R8
	JA   lastwin
	NAMEEND1(0, Y1, Y2, Y3)
	NAMEEND2(0, Y1, Y2, Y7, Y8)
	VPMOVMSKB Y2, R9
	TESTL R9, R9
	JNZ  found
	ADDQ $32, DI
lastwin:
	CMPQ DI, R10
	JAE  notfound
	MOVQ R8, DI
	NAMEEND1(0, Y1, Y2, Y3)
	NAMEEND2(0, Y1, Y2, Y7, Y8)
	VPMOVMSKB Y2, R9
	TESTL R9, R9
	JNZ  found

notfound:
	MOVQ $-1, ret+24(FP)
	VZEROUPPER
	RET

check64:
	NAMEEND2(0, Y1, Y2, Y7, Y8)
	NAMEEND2(32, Y4, Y5, Y9, Y10)
	VPOR   Y2, Y5, Y0
	VPTEST Y0, Y0
	JZ     next64
	VPMOVMSKB Y2, R9
	TESTL R9, R9
	JNZ  found
	VPMOVMSKB Y5, R9
	ADDQ $32, DI

found:
	BSFL R9, R9
	SUBQ SI, DI
	ADDQ R9, DI
	MOVQ DI, ret+24(FP)
	VZEROUPPER
	RET

tail:
	// Fewer than 32 positions: one at a time.
	CMPB 4(DI), $0x3a
	JNE  tailnext
	MOVBLZX 3(DI), AX
	ORL  $0x20, AX
	CMPL AX, $0x72
	JEQ  tailr
	CMPL AX, $0x70
	JEQ  tailp
	CMPL AX, $0x64
	JNE  tailnext
	MOVBLZX 2(DI), AX
	ORL  $0x20, AX
	CMPL AX, $0x65
	JEQ  foundtail
	JMP  tailnext
tailr:
	CMPB 0(DI), $0x2d
	JEQ  foundtail
	JMP  tailnext
tailp:
	CMPB 1(DI), $0x2d
	JEQ  foundtail
tailnext:
	INCQ DI
	CMPQ DI, R10
	JB   tail

notfound1:
	MOVQ $-1, ret+24(FP)
	RET

foundtail:
	SUBQ SI, DI
	MOVQ DI, ret+24(FP)
	RET
