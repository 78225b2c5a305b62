//go:build amd64 && !purego

#include "textflag.h"

// The byte-reversing shuffle: byte i takes byte 15-i.
DATA revmask<>+0(SB)/8, $0x08090a0b0c0d0e0f
DATA revmask<>+8(SB)/8, $0x0001020304050607
GLOBL revmask<>(SB), RODATA|NOPTR, $16

// "0123456789abcdef"
DATA digits<>+0(SB)/8, $0x3736353433323130
DATA digits<>+8(SB)/8, $0x6665646362613938
GLOBL digits<>(SB), RODATA|NOPTR, $16

DATA low4<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA low4<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL low4<>(SB), RODATA|NOPTR, $16

// func hexRevSSSE3(dst, src *byte, n int)
// Writes the hex digits of the 16n bytes at src, last byte first, high
// nibble first: 32n bytes at dst.
TEXT ·hexRevSSSE3(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ CX, AX
	SHLQ $4, AX
	ADDQ AX, SI
	MOVOU revmask<>(SB), X5
	MOVOU digits<>(SB), X6
	MOVOU low4<>(SB), X7

loop:
	TESTQ CX, CX
	JZ    done
	SUBQ  $16, SI
	MOVOU (SI), X0
	PSHUFB X5, X0
	MOVOU X0, X1
	PSRLW $4, X1
	PAND  X7, X1
	PAND  X7, X0
	MOVOU X6, X2
	PSHUFB X1, X2
	MOVOU X6, X3
	PSHUFB X0, X3
	MOVOU X2, X4
	PUNPCKLBW X3, X4
	PUNPCKHBW X3, X2
	MOVOU X4, (DI)
	MOVOU X2, 16(DI)
	ADDQ  $32, DI
	DECQ  CX
	JMP   loop

done:
	RET
