package heartbeat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// A pair session is two agents' channel, for what one node sends another directly (a
// gateway's conntrack copy to its standby). Its keys come from the two agents' published
// heartbeat keys, as a heartbeat session's come from an agent's and the leader's, but with
// an info string of its own: a key of one channel never opens a datagram of the other.
// Each direction has its own key, and every datagram is sealed (encrypted and
// authenticated) with AES-256-GCM.

// PairSession holds the keys of one agent key with another agent's, for one pair of nodes.
type PairSession struct {
	ID SessionID
	// Own and Peer are the nodes; Peer is the node whose key the session was made with.
	Own, Peer  string
	send, recv cipher.AEAD
}

const pairInfo = "egressgw agent pair v1 "

// NewPairSession is own's session, on node ownNode, with the key peer that node peerNode
// published. Both ends compute the same ID, and each the other's receiving key as its
// sending one.
func NewPairSession(own *KeyPair, peer PublicKey, ownNode, peerNode string) (*PairSession, error) {
	if ownNode == "" || peerNode == "" || ownNode == peerNode || len(ownNode) > MaxNodeName || len(peerNode) > MaxNodeName {
		return nil, fmt.Errorf("a pair session needs two different node names of 1 to %d bytes, not %q and %q", MaxNodeName, ownNode, peerNode)
	}
	secret, err := own.agree(peer)
	if err != nil {
		return nil, err
	}
	// The salt and info order the pair by node name, so that both ends agree.
	first, second, firstKey, secondKey := ownNode, peerNode, own.Public, peer
	if peerNode < ownNode {
		first, second, firstKey, secondKey = peerNode, ownNode, peer, own.Public
	}
	salt := append(firstKey[:len(firstKey):len(firstKey)], secondKey[:]...)
	keys, err := hkdf.Key(sha256.New, secret, salt, pairInfo+first+" "+second, 64)
	if err != nil {
		return nil, err
	}
	fromFirst, fromSecond := newAEAD(keys[:32]), newAEAD(keys[32:])
	s := &PairSession{Own: ownNode, Peer: peerNode, send: fromFirst, recv: fromSecond}
	if ownNode == second {
		s.send, s.recv = fromSecond, fromFirst
	}
	id := sha256.Sum256(append(salt, pairInfo...))
	copy(s.ID[:], id[:])
	return s, nil
}

func newAEAD(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 32-byte key always makes an AES-256 cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err) // AES has GCM's block size
	}
	return aead
}

// PairOverhead is what Seal adds to a plaintext.
const PairOverhead = 16

// Seal appends to dst the plaintext encrypted and authenticated, with ad authenticated
// too. counter must never repeat in the session's sending direction: it is GCM's nonce.
func (s *PairSession) Seal(dst []byte, counter uint64, plaintext, ad []byte) []byte {
	var n [12]byte
	putCounter(&n, counter)
	return s.send.Seal(dst, n[:], plaintext, ad)
}

// Open checks and decrypts what the peer sealed with counter, appending the plaintext to
// dst.
func (s *PairSession) Open(dst []byte, counter uint64, sealed, ad []byte) ([]byte, error) {
	var n [12]byte
	putCounter(&n, counter)
	out, err := s.recv.Open(dst, n[:], sealed, ad)
	if err != nil {
		return nil, ErrBadMAC
	}
	return out, nil
}

func putCounter(n *[12]byte, c uint64) {
	for i := range 8 {
		n[11-i] = byte(c >> (8 * i))
	}
}
