package heartbeat

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The wire format is fixed-size binary, big-endian, one datagram per message:
//
//	magic "EGWB" | version 1 | kind | node name length | node name
//	| seq u64 | term u64 | generation i64 | lease ms u32 (beats only)
//
// A beat's term is the highest leader term the agent has accepted an answer from, and
// its generation is the generation of the grants its cache holds. An answer's term is
// the answering leader's, and its generation is the grants' generation the leader vouches
// for, or 0 if it vouches for none.
const (
	magic   = "EGWB"
	version = 1

	kindBeat   = 1
	kindAnswer = 2

	// MaxNodeName is the longest node name a datagram carries: a DNS subdomain.
	MaxNodeName = 253
)

// Beat is what an agent sends.
type Beat struct {
	Node string
	// Seq numbers the agent's beats; the answer repeats it, so the agent knows when the
	// beat it answers was sent.
	Seq uint64
	// Term is the highest leader term the agent has accepted; 0 before any.
	Term uint64
	// Generation is the generation of the node's grants in the agent's cache.
	Generation int64
	// LeaseMillis is how long an answered beat grants the node its IPs.
	LeaseMillis uint32
}

// Answer is what the leader sends back.
type Answer struct {
	Node string
	Seq  uint64
	Term uint64
	// Vouched is the generation of the node's grants the leader vouches for; 0 vouches
	// for nothing, and the agent extends nothing.
	Vouched int64
}

// header is magic, version, kind and the name's length.
const header = len(magic) + 3

// AppendBeat encodes b.
func AppendBeat(buf []byte, b Beat) ([]byte, error) {
	buf, err := appendHeader(buf, kindBeat, b.Node)
	if err != nil {
		return nil, err
	}
	buf = binary.BigEndian.AppendUint64(buf, b.Seq)
	buf = binary.BigEndian.AppendUint64(buf, b.Term)
	buf = binary.BigEndian.AppendUint64(buf, uint64(b.Generation))
	return binary.BigEndian.AppendUint32(buf, b.LeaseMillis), nil
}

// AppendAnswer encodes a.
func AppendAnswer(buf []byte, a Answer) ([]byte, error) {
	buf, err := appendHeader(buf, kindAnswer, a.Node)
	if err != nil {
		return nil, err
	}
	buf = binary.BigEndian.AppendUint64(buf, a.Seq)
	buf = binary.BigEndian.AppendUint64(buf, a.Term)
	return binary.BigEndian.AppendUint64(buf, uint64(a.Vouched)), nil
}

func appendHeader(buf []byte, kind byte, node string) ([]byte, error) {
	if node == "" || len(node) > MaxNodeName {
		return nil, fmt.Errorf("node name %q must be 1 to %d bytes", node, MaxNodeName)
	}
	buf = append(buf, magic...)
	buf = append(buf, version, kind, byte(len(node)))
	return append(buf, node...), nil
}

var errMalformed = errors.New("not a heartbeat datagram")

// ParseBeat decodes a beat.
func ParseBeat(data []byte) (Beat, error) {
	node, rest, err := parseHeader(data, kindBeat, 28)
	if err != nil {
		return Beat{}, err
	}
	return Beat{
		Node:        node,
		Seq:         binary.BigEndian.Uint64(rest),
		Term:        binary.BigEndian.Uint64(rest[8:]),
		Generation:  int64(binary.BigEndian.Uint64(rest[16:])),
		LeaseMillis: binary.BigEndian.Uint32(rest[24:]),
	}, nil
}

// ParseAnswer decodes an answer.
func ParseAnswer(data []byte) (Answer, error) {
	node, rest, err := parseHeader(data, kindAnswer, 24)
	if err != nil {
		return Answer{}, err
	}
	return Answer{
		Node:    node,
		Seq:     binary.BigEndian.Uint64(rest),
		Term:    binary.BigEndian.Uint64(rest[8:]),
		Vouched: int64(binary.BigEndian.Uint64(rest[16:])),
	}, nil
}

// parseHeader checks the header and returns the node name and the fixed-size body.
func parseHeader(data []byte, kind byte, body int) (string, []byte, error) {
	if len(data) < header || string(data[:len(magic)]) != magic {
		return "", nil, errMalformed
	}
	if v := data[len(magic)]; v != version {
		return "", nil, fmt.Errorf("heartbeat version %d, want %d", v, version)
	}
	if k := data[len(magic)+1]; k != kind {
		return "", nil, fmt.Errorf("heartbeat message kind %d, want %d", k, kind)
	}
	n := int(data[len(magic)+2])
	if n == 0 || len(data) != header+n+body {
		return "", nil, errMalformed
	}
	return string(data[header : header+n]), data[header+n:], nil
}
