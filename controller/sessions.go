package controller

import (
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/heartbeat"
)

// sessions are the leader's heartbeat sessions: one per key an agent publishes in its
// node's NetworkGatewayNode status, with this replica's key. Each remembers the agent's
// nonce and the highest sequence number seen, so that a datagram is taken once, in order.
type sessions struct {
	mu   sync.Mutex
	byID map[heartbeat.SessionID]*session
	// byKey keeps the sessions across updates: agreeing on a key costs an ECDH.
	byKey map[nodeKey]*session
}

type nodeKey struct {
	node string
	key  heartbeat.PublicKey
}

type session struct {
	s *heartbeat.Session
	// nonce and seq are the agent's start and its highest beat seen, zero before the
	// first (agents' nonces are random and never zero); changed with compare-and-swap,
	// as beats of one session are taken by one goroutine but update runs beside it.
	nonce, seq atomic.Uint64
}

func newSessions() sessions {
	return sessions{byID: map[heartbeat.SessionID]*session{}, byKey: map[nodeKey]*session{}}
}

// find is the session a datagram names; nil if there is none.
func (ss *sessions) find(id heartbeat.SessionID) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.byID[id]
}

// advance takes an authenticated beat's nonce and sequence number: true the first time
// they come, false for any repeat, an earlier number, or another start's nonce.
func (s *session) advance(nonce, seq uint64) bool {
	if nonce == 0 || !s.nonce.CompareAndSwap(0, nonce) && s.nonce.Load() != nonce {
		return false
	}
	for {
		last := s.seq.Load()
		if seq <= last {
			return false
		}
		if s.seq.CompareAndSwap(last, seq) {
			return true
		}
	}
}

// update makes the sessions those of own with every key the nodes publish (node → keys,
// as status.heartbeatKeys has them); a key no node publishes any more loses its session.
func (ss *sessions) update(own *heartbeat.KeyPair, published map[string][]string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	byID := make(map[heartbeat.SessionID]*session, len(ss.byID))
	byKey := make(map[nodeKey]*session, len(ss.byKey))
	for node, keys := range published {
		for _, raw := range keys {
			pub, err := heartbeat.ParsePublicKey(raw)
			if err != nil {
				klog.V(2).InfoS("Ignoring a heartbeat key a node publishes", "node", node, "err", err)
				continue
			}
			k := nodeKey{node, pub}
			s := ss.byKey[k]
			if s == nil {
				hs, err := heartbeat.NewLeaderSession(own, pub, node)
				if err != nil {
					klog.V(2).InfoS("Ignoring a heartbeat key a node publishes", "node", node, "err", err)
					continue
				}
				s = &session{s: hs}
			}
			byKey[k], byID[s.s.ID] = s, s
		}
	}
	ss.byID, ss.byKey = byID, byKey
}
