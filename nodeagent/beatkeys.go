package nodeagent

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// beatKeys are the agent's heartbeat keys: one made at every start, and, while it rotates,
// the one before. The node's NetworkGatewayNode status publishes them, and the leader
// answers beats authenticated with a published key only. A rotation never leaves a beat
// unanswerable: the old key stays in use until an answer shows the leader has the new one.
//
//  1. The new key is made; both keys are to be published, the new one first. Beats go
//     out under the old key only, until the report with both is written.
//  2. Once it is, every beat goes out under both keys.
//  3. The first answer under the new key retires the old one: it is no longer used, and
//     the next report publishes the new key alone.
type beatKeys struct {
	// nonce is random per start: it names this start in every beat.
	nonce uint64
	// every is how often a new key is made; zero: never.
	every time.Duration

	mu                sync.Mutex
	current, previous *hb.KeyPair
	made              time.Time // when current was made
	// version counts the changes of the key list; published is the version the API
	// server has, as the last report that was written said.
	version, published uint64
}

func newBeatKeys(every time.Duration) (*beatKeys, error) {
	var n [8]byte
	if _, err := rand.Read(n[:]); err != nil {
		return nil, fmt.Errorf("making a heartbeat nonce: %w", err)
	}
	key, err := hb.NewKeyPair()
	if err != nil {
		return nil, err
	}
	return &beatKeys{nonce: binary.BigEndian.Uint64(n[:]), every: every, current: key, made: time.Now(), version: 1}, nil
}

// list is what the report publishes, newest first, and its version.
func (k *beatKeys) list() ([]string, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := []string{k.current.Public.String()}
	if k.previous != nil {
		out = append(out, k.previous.Public.String())
	}
	return out, k.version
}

// wrote notes that the API server has the list of version.
func (k *beatKeys) wrote(version uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.published = max(k.published, version)
}

// sending are the keys beats go out under now.
func (k *beatKeys) sending() []*hb.KeyPair {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.previous == nil:
		return []*hb.KeyPair{k.current}
	case k.published < k.version:
		return []*hb.KeyPair{k.previous}
	}
	return []*hb.KeyPair{k.current, k.previous}
}

// answered notes an answer under key; it reports whether the key list changed (the old
// key retired), which the next report publishes.
func (k *beatKeys) answered(key *hb.KeyPair) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key != k.current || k.previous == nil || k.published < k.version {
		return false
	}
	k.previous = nil
	k.version++
	return true
}

// rotate makes a new key when the current one is due, and reports whether it did. A
// rotation waits for the last one to end.
func (k *beatKeys) rotate(now time.Time) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.every <= 0 || k.previous != nil || now.Sub(k.made) < k.every {
		return false, nil
	}
	key, err := hb.NewKeyPair()
	if err != nil {
		return false, err
	}
	k.previous, k.current, k.made = k.current, key, now
	k.version++
	return true, nil
}

// sealing is the key pair that seals what the agent sends other agents: the newest.
func (k *beatKeys) sealing() *hb.KeyPair {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current
}

// pairs are the key pairs other agents may have sealed with, newest first.
func (k *beatKeys) pairs() []*hb.KeyPair {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.previous != nil {
		return []*hb.KeyPair{k.current, k.previous}
	}
	return []*hb.KeyPair{k.current}
}
