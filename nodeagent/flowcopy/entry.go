package flowcopy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Entry is a gateway's SNAT conntrack entry, as the copy carries it: the pod's flow, the
// egress IP and port it was translated to, and TCP's state.
type Entry struct {
	Key
	// EgressIP and NATPort are the translated source: the reply's destination.
	EgressIP netip.Addr
	NATPort  uint16
	TCP      TCPInfo
	// Timeout is what is left of the entry's life, in seconds.
	Timeout uint32
}

// Key names a flow in the gateway's zone: its original direction.
type Key struct {
	Proto uint8 // 6 (TCP) or 17 (UDP)
	Pod   netip.AddrPort
	Dst   netip.AddrPort
}

// TCPInfo is what conntrack's TCP tracking exports of a connection. The sequence numbers
// and windows it does not export: on the first packet of each direction a copied entry
// learns them, as conntrack does for a connection it picks up mid-stream.
type TCPInfo struct {
	State                   uint8
	WScaleOrig, WScaleReply uint8
	FlagsOrig, FlagsReply   uint8
}

// Conntrack's TCP states and flags this package reads (include/uapi/linux/netfilter/
// nf_conntrack_tcp.h).
const (
	TCPEstablished = 3

	// FlagWindowScale, FlagSACKPerm and FlagCloseInit describe the connection. The
	// other flags (data unacknowledged, maximum ack set, ...) describe sequence numbers
	// the copy does not carry, so they are not copied.
	FlagWindowScale = 0x01
	FlagSACKPerm    = 0x02
	FlagCloseInit   = 0x04
	copiedFlags     = FlagWindowScale | FlagSACKPerm | FlagCloseInit
)

func (e Entry) String() string {
	return fmt.Sprintf("proto %d %s -> %s as %s:%d", e.Proto, e.Pod, e.Dst, e.EgressIP, e.NATPort)
}

// op is what a record does.
type op uint8

const (
	opUpsert op = 1
	opDelete op = 2
)

// recordSize is the encoded size of a record: op, proto, pod, dst, egress IP and port,
// TCP's state, scales and flags, timeout.
const recordSize = 1 + 1 + 6 + 6 + 6 + 5 + 4

type record struct {
	op op
	Entry
}

func appendRecord(b []byte, r record) []byte {
	b = append(b, byte(r.op), r.Proto)
	b = appendAddrPort(b, r.Pod)
	b = appendAddrPort(b, r.Dst)
	b = appendAddrPort(b, netip.AddrPortFrom(r.EgressIP, r.NATPort))
	b = append(b, r.TCP.State, r.TCP.WScaleOrig, r.TCP.WScaleReply, r.TCP.FlagsOrig, r.TCP.FlagsReply)
	return binary.BigEndian.AppendUint32(b, r.Timeout)
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().As4()
	b = append(b, a[:]...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func readAddrPort(b []byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), binary.BigEndian.Uint16(b[4:]))
}

func readRecord(b []byte) (record, error) {
	if len(b) < recordSize {
		return record{}, errMalformed
	}
	r := record{op: op(b[0])}
	r.Proto = b[1]
	r.Pod, r.Dst = readAddrPort(b[2:]), readAddrPort(b[8:])
	nat := readAddrPort(b[14:])
	r.EgressIP, r.NATPort = nat.Addr(), nat.Port()
	r.TCP = TCPInfo{State: b[20], WScaleOrig: b[21], WScaleReply: b[22], FlagsOrig: b[23], FlagsReply: b[24]}
	r.Timeout = binary.BigEndian.Uint32(b[25:])
	if (r.op != opUpsert && r.op != opDelete) || (r.Proto != 6 && r.Proto != 17) {
		return record{}, errMalformed
	}
	return r, nil
}
