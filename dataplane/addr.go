package dataplane

import (
	"encoding/binary"
	"net/netip"
)

// words returns a's 16-byte form (IPv4 as ::ffff:a.b.c.d) as the four
// network-order words the eBPF programs use (__u32 addr[4]).
func words(a netip.Addr) [4]uint32 {
	b := a.Unmap().As16()
	var w [4]uint32
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

// fromWords is the inverse of words; v4-mapped addresses come back as IPv4.
func fromWords(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	return netip.AddrFrom16(b).Unmap()
}

// word4 returns an IPv4 address as one network-order word.
func word4(a netip.Addr) uint32 {
	if !a.IsValid() {
		return 0
	}
	b := a.Unmap().As4()
	return binary.NativeEndian.Uint32(b[:])
}
