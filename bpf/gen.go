package bpf

// The object is compiled for bpfel only: amd64 and arm64, the architectures we ship,
// are both little-endian. The generated egw_bpfel.go and egw_bpfel.o are committed, so
// that building needs no clang; hack/verify.sh regenerates them and fails on drift.
//
// asm/ headers live in the multiarch include directory (Debian: linux-libc-dev), which
// clang does not search for -target bpfel. clang -print-multiarch names it; the object
// does not depend on which one it is, since it uses no architecture-specific types.
//
// bpf2go maps this directory to "." in debug info and runs clang with -fno-ident, so
// the object is the same wherever the repository is checked out.

//go:generate sh -c "go tool bpf2go -target bpfel -no-global-types -go-package bpf egw egw.c -- -mcpu=v3 -Wall -Werror -I/usr/include/$(clang -print-multiarch)"
