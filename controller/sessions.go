package controller

import (
	"sync"

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
	// nonce and seq are the agent's start and its highest beat seen; seen is false
	// before the first.
	nonce, seq uint64
	seen       bool
}

func newSessions() sessions {
	return sessions{byID: map[heartbeat.SessionID]*session{}, byKey: map[nodeKey]*session{}}
}

// find is the session a datagram names; nil if there is none.
func (ss *sessions) find(id heartbeat.SessionID) *heartbeat.Session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.byID[id]; s != nil {
		return s.s
	}
	return nil
}

// advance takes an authenticated beat's nonce and sequence number: true the first time
// they come, false for any repeat, an earlier number, or another start's nonce.
func (ss *sessions) advance(id heartbeat.SessionID, nonce, seq uint64) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[id]
	if s == nil || s.seen && (nonce != s.nonce || seq <= s.seq) {
		return false
	}
	s.nonce, s.seq, s.seen = nonce, seq, true
	return true
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
