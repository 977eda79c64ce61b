package flowcopy

import (
	"encoding/binary"
	"errors"
	"net/netip"

	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// A datagram is a header, sent in the clear but authenticated, and a sealed body:
//
//	magic "EGWC" | version 1 | kind | node name length | node name | session id [8]
//	| counter u64 | sealed body | GCM tag [16]
//
// The node is the sender's; the counter is GCM's nonce, counting every datagram the
// sender seals in the session. Bodies, big-endian:
//
//	data: stream u64 | seq u64 | flags u8 | IP count u8 | IPs | record count u16 | records
//	ack:  stream u64 | acked seq u64 | receiver nonce u64 | flags u8 | copies u32
const (
	magic   = "EGWC"
	version = 1

	kindData = 1
	kindAck  = 2

	// maxDatagram keeps a datagram within a 1500-byte MTU, with room for a tunnel.
	maxDatagram = 1400
)

// Data flags.
const (
	// flagSnapshotBegin: the records from this one on, until flagSnapshotEnd, are the
	// holder's whole table for the IPs the end lists.
	flagSnapshotBegin = 1 << iota
	// flagSnapshotEnd: copies of the listed IPs not written since the snapshot began are
	// stale.
	flagSnapshotEnd
	// flagProbe: carries nothing new (its seq is the last one sent); asks for an ack.
	flagProbe
)

// Ack flags.
const (
	// flagUnknownStream: the receiver cannot continue the stream (it restarted); the
	// sender starts a new one, with a snapshot.
	flagUnknownStream = 1
)

var errMalformed = errors.New("not a flow copy datagram")

type dataMsg struct {
	Stream, Seq uint64
	Flags       uint8
	IPs         []netip.Addr
	Records     []record
}

type ackMsg struct {
	Stream, Acked, Nonce uint64
	Flags                uint8
	Copies               uint32
}

// header appends a datagram's header.
func header(b []byte, kind byte, s *hb.PairSession, counter uint64) []byte {
	b = append(b, magic...)
	b = append(b, version, kind, byte(len(s.Own)))
	b = append(b, s.Own...)
	b = append(b, s.ID[:]...)
	return binary.BigEndian.AppendUint64(b, counter)
}

// dataRoom is how many records fit in a data datagram of a session with ips listed.
func dataRoom(s *hb.PairSession, ips int) int {
	fixed := len(magic) + 3 + len(s.Own) + 8 + 8 + 8 + 8 + 1 + 1 + 4*ips + 2 + hb.PairOverhead
	return (maxDatagram - fixed) / recordSize
}

func sealData(buf []byte, s *hb.PairSession, counter uint64, m dataMsg) []byte {
	buf = header(buf[:0], kindData, s, counter)
	ad := len(buf)
	body := make([]byte, 0, 20+4*len(m.IPs)+recordSize*len(m.Records))
	body = binary.BigEndian.AppendUint64(body, m.Stream)
	body = binary.BigEndian.AppendUint64(body, m.Seq)
	body = append(body, m.Flags, byte(len(m.IPs)))
	for _, ip := range m.IPs {
		a := ip.As4()
		body = append(body, a[:]...)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(m.Records)))
	for _, r := range m.Records {
		body = appendRecord(body, r)
	}
	return s.Seal(buf, counter, body, buf[:ad])
}

func sealAck(buf []byte, s *hb.PairSession, counter uint64, m ackMsg) []byte {
	buf = header(buf[:0], kindAck, s, counter)
	ad := len(buf)
	body := make([]byte, 0, 29)
	body = binary.BigEndian.AppendUint64(body, m.Stream)
	body = binary.BigEndian.AppendUint64(body, m.Acked)
	body = binary.BigEndian.AppendUint64(body, m.Nonce)
	body = append(body, m.Flags)
	body = binary.BigEndian.AppendUint32(body, m.Copies)
	return s.Seal(buf, counter, body, buf[:ad])
}

// peek reads a datagram's header: its kind, the sender's node and the session id.
func peek(b []byte) (kind byte, node string, id hb.SessionID, err error) {
	if len(b) < len(magic)+3 || string(b[:len(magic)]) != magic || b[len(magic)] != version {
		return 0, "", id, errMalformed
	}
	kind, n := b[len(magic)+1], int(b[len(magic)+2])
	if n == 0 || len(b) < len(magic)+3+n+8+8+hb.PairOverhead {
		return 0, "", id, errMalformed
	}
	node = string(b[len(magic)+3 : len(magic)+3+n])
	copy(id[:], b[len(magic)+3+n:])
	return kind, node, id, nil
}

// open checks and decrypts a datagram of the session; it returns the body, appended to
// dst.
func open(dst, b []byte, s *hb.PairSession) ([]byte, error) {
	n := int(b[len(magic)+2])
	ad := len(magic) + 3 + n + 8 + 8
	counter := binary.BigEndian.Uint64(b[ad-8:])
	return s.Open(dst, counter, b[ad:], b[:ad])
}

// readData decodes a data body; its records are appended to recs[:0].
func readData(body []byte, recs []record) (dataMsg, error) {
	var m dataMsg
	if len(body) < 18 {
		return m, errMalformed
	}
	m.Stream, m.Seq = binary.BigEndian.Uint64(body), binary.BigEndian.Uint64(body[8:])
	m.Flags = body[16]
	nips := int(body[17])
	body = body[18:]
	if len(body) < 4*nips+2 {
		return m, errMalformed
	}
	for i := range nips {
		m.IPs = append(m.IPs, netip.AddrFrom4([4]byte(body[4*i:])))
	}
	body = body[4*nips:]
	nrec := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	if len(body) != nrec*recordSize {
		return m, errMalformed
	}
	m.Records = recs[:0]
	for i := range nrec {
		r, err := readRecord(body[i*recordSize:])
		if err != nil {
			return m, err
		}
		m.Records = append(m.Records, r)
	}
	return m, nil
}

func readAck(body []byte) (ackMsg, error) {
	if len(body) != 29 {
		return ackMsg{}, errMalformed
	}
	return ackMsg{Stream: binary.BigEndian.Uint64(body), Acked: binary.BigEndian.Uint64(body[8:]),
		Nonce: binary.BigEndian.Uint64(body[16:]), Flags: body[24], Copies: binary.BigEndian.Uint32(body[25:])}, nil
}
