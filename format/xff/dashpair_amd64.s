#include "textflag.h"

// func indexDashPairAVX2(b []byte) int
// Returns the first i with b[i] == '-' && b[i+10] == '-', or -1.
TEXT ·indexDashPairAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	SUBQ $10, CX            // CX = number of candidate positions
	JLE  notfound
	XORQ DX, DX             // DX = i
	MOVQ $0x2d, AX
	MOVQ AX, X0
	VPBROADCASTB X0, Y0     // Y0 = 32 x '-'

loop64:
	LEAQ 64(DX), R8
	CMPQ R8, CX
	JA   loop32
	VMOVDQU (SI)(DX*1), Y1
	VMOVDQU 10(SI)(DX*1), Y2
	VMOVDQU 32(SI)(DX*1), Y3
	VMOVDQU 42(SI)(DX*1), Y4
	VPCMPEQB Y0, Y1, Y1
	VPCMPEQB Y0, Y2, Y2
	VPCMPEQB Y0, Y3, Y3
	VPCMPEQB Y0, Y4, Y4
	VPAND Y1, Y2, Y1
	VPAND Y3, Y4, Y3
	VPOR  Y1, Y3, Y5
	VPTEST Y5, Y5
	JNZ  found64
	MOVQ R8, DX
	JMP  loop64

found64:
	VPMOVMSKB Y1, R9
	TESTL R9, R9
	JNZ  found
	VPMOVMSKB Y3, R9
	ADDQ $32, DX
	JMP  found

loop32:
	LEAQ 32(DX), R8
	CMPQ R8, CX
	JA   last32
	VMOVDQU (SI)(DX*1), Y1
	VMOVDQU 10(SI)(DX*1), Y2
	VPCMPEQB Y0, Y1, Y1
	VPCMPEQB Y0, Y2, Y2
	VPAND Y1, Y2, Y1
	VPMOVMSKB Y1, R9
	TESTL R9, R9
	JNZ  found
	MOVQ R8, DX
	JMP  loop32

found:
	BSFL R9, R9
	ADDQ R9, DX
	MOVQ DX, ret+24(FP)
	VZEROUPPER
	RET

last32:
	// Fewer than 32 positions are left. If there are 32 positions in all,
	// check the last 32: those already checked hold no pair, so any pair
	// found there is the first.
	CMPQ DX, CX
	JAE  notfound
	CMPQ CX, $32
	JB   tail
	MOVQ CX, DX
	SUBQ $32, DX
	VMOVDQU (SI)(DX*1), Y1
	VMOVDQU 10(SI)(DX*1), Y2
	VPCMPEQB Y0, Y1, Y1
	VPCMPEQB Y0, Y2, Y2
	VPAND Y1, Y2, Y1
	VPMOVMSKB Y1, R9
	TESTL R9, R9
	JNZ  found
	JMP  notfound

tail:
	CMPQ DX, CX
	JAE  notfound
	MOVBLZX (SI)(DX*1), R9
	CMPB R9, $0x2d
	JNE  next
	MOVBLZX 10(SI)(DX*1), R9
	CMPB R9, $0x2d
	JEQ  foundtail
next:
	INCQ DX
	JMP  tail

foundtail:
	MOVQ DX, ret+24(FP)
	VZEROUPPER
	RET

notfound:
	MOVQ $-1, ret+24(FP)
	VZEROUPPER
	RET
