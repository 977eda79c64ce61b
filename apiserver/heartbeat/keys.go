package heartbeat

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sync/atomic"
)

// Each side of the direct channel has an X25519 key pair and publishes its public key
// where only it can write: an agent in its NetworkGatewayNode's status (the node
// restriction policy lets no one else write it), the leader in its leader election Lease
// (only the controller may write it). Each agent key and leader key agree on a secret
// (ECDH), from which HKDF derives the pair's two MAC keys, one per direction. So every
// node has keys of its own, and no secret is ever handed out: a compromised node can
// forge only its own beats, and only the leader its answers.

// PublicKey is an X25519 public key, as published: standard base64.
type PublicKey [32]byte

func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// ParsePublicKey reads a published key.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, fmt.Errorf("heartbeat key %q is not 32 bytes of base64", s)
	}
	copy(k[:], b)
	return k, nil
}

// KeyPair is one side's key. Agents make one per start, so a key also names a boot.
type KeyPair struct {
	priv   *ecdh.PrivateKey
	Public PublicKey
	// answers counts the answers sealed in the sessions of this key (a leader's).
	answers atomic.Uint64
}

// NewKeyPair makes a key pair from the system's random source.
func NewKeyPair() (*KeyPair, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("making a heartbeat key: %w", err)
	}
	k := &KeyPair{priv: priv}
	copy(k.Public[:], priv.PublicKey().Bytes())
	return k, nil
}

// SessionID names the session of an agent key and a leader key in every datagram.
type SessionID [8]byte

// Session holds the MAC keys of one agent key with one leader key, for one node.
type Session struct {
	ID   SessionID
	Node string
	// beat and answer MAC the two directions, each with a key of its own: a datagram
	// MACed for one direction never passes for the other.
	beat, answer *macer
	// answers counts the answers of the leader's key, in every session it has; nil in an
	// agent's session, which does not answer.
	answers *atomic.Uint64
}

// NewAgentSession is an agent's session with the leader key it read from the Lease.
func NewAgentSession(own *KeyPair, leader PublicKey, node string) (*Session, error) {
	return newSession(own, leader, own.Public, leader, node)
}

// NewLeaderSession is the leader's session with an agent key its node published.
func NewLeaderSession(own *KeyPair, agent PublicKey, node string) (*Session, error) {
	s, err := newSession(own, agent, agent, own.Public, node)
	if err == nil {
		s.answers = &own.answers
	}
	return s, err
}

const sessionInfo = "egressgw heartbeat v2 "

func newSession(own *KeyPair, peer, agent, leader PublicKey, node string) (*Session, error) {
	if node == "" || len(node) > MaxNodeName {
		return nil, fmt.Errorf("node name %q must be 1 to %d bytes", node, MaxNodeName)
	}
	secret, err := own.agree(peer)
	if err != nil {
		return nil, err
	}
	salt := append(agent[:len(agent):len(agent)], leader[:]...)
	keys, err := hkdf.Key(sha256.New, secret, salt, sessionInfo+node, 64)
	if err != nil {
		return nil, err
	}
	s := &Session{Node: node, beat: newMacer(kindBeat, keys[:32]), answer: newMacer(kindAnswer, keys[32:])}
	id := sha256.Sum256(salt)
	copy(s.ID[:], id[:])
	return s, nil
}

// agree is the secret own's key and peer's agree on (X25519).
func (own *KeyPair) agree(peer PublicKey) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer[:])
	if err != nil {
		return nil, fmt.Errorf("heartbeat key %s: %w", peer, err)
	}
	secret, err := own.priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("agreeing on a key with %s: %w", peer, err)
	}
	return secret, nil
}
