package controller

import (
	"errors"
	"sync"
	"time"

	"github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/controller/liveness"
)

// answerer answers node agents' beats. It vouches for the newest generation of a node's
// grants this controller knows of (from its cache, or from its own writes, whichever is
// newer); the agent extends its grants only if its cache holds that generation.
//
// A node that was Down when its beat came is not vouched for until a pass that started
// after the beat has completed: the pass that saw it Down may be writing its IPs to other
// nodes right now, and its own spec may not say so yet.
//
// It answers only beats authenticated in a session of this replica's key with a key the
// node's agent published in its NetworkGatewayNode status, whose sequence number is above
// every one seen in that session, and that ask for the lease the node's heartbeat Lease
// gives; it answers no node it has no session with.
type answerer struct {
	tracker *liveness.Tracker
	term    func() (uint64, bool)
	kick    func() // asks for a pass
	key     *heartbeat.KeyPair

	mu          sync.Mutex
	generations map[string]int64  // node → newest generation of its grants known here
	revived     map[string]uint64 // node → passes started when it came back
	started     uint64            // passes started
	completed   uint64            // passes that started and wrote everything, in order
	sessions    sessions
}

func newAnswerer(tracker *liveness.Tracker, term func() (uint64, bool), kick func(), key *heartbeat.KeyPair) *answerer {
	return &answerer{tracker: tracker, term: term, kick: kick, key: key,
		generations: map[string]int64{}, revived: map[string]uint64{}, sessions: newSessions()}
}

// reply authenticates one datagram and decides its answer: it returns the answer's
// datagram, appended to buf, or the reason no answer goes back. A datagram that does not
// verify, or repeats or precedes a sequence number of its session, changes nothing.
func (a *answerer) reply(buf, data []byte) ([]byte, string) {
	id, _ := heartbeat.PeekSession(data)
	ent := a.sessions.find(id)
	beat, s, err := heartbeat.OpenBeat(data, func(heartbeat.SessionID) *heartbeat.Session {
		if ent == nil {
			return nil
		}
		return ent.s
	})
	switch {
	case errors.Is(err, heartbeat.ErrUnknownSession):
		return nil, "unknown-session"
	case errors.Is(err, heartbeat.ErrBadMAC):
		return nil, "bad-mac"
	case err != nil:
		return nil, "malformed"
	}
	if !ent.advance(beat.Nonce, beat.Seq) {
		return nil, "replayed"
	}
	ans, reason := a.answer(beat)
	if reason != "" {
		return nil, reason
	}
	out, err := s.SealAnswer(buf, ans)
	if err != nil {
		return nil, "malformed"
	}
	return out, ""
}

// answer decides the answer to one authenticated beat, or the reason it gets none.
func (a *answerer) answer(b heartbeat.Beat) (heartbeat.Answer, string) {
	term, ok := a.term()
	if !ok || b.Term > term {
		return heartbeat.Answer{}, "unanswered" // not answering, or the agent follows a newer leader
	}
	// A beat asks for the lease its node's Lease gives, and no other (HeardLeased).
	wasUp, switched, reason := a.tracker.HeardLeased(b.Node, time.Duration(b.LeaseMillis)*time.Millisecond, b.Term == term)
	if reason != "" {
		return heartbeat.Answer{}, reason
	}
	a.mu.Lock()
	gen, known := a.generations[b.Node]
	if !known {
		// A session outlived its node's report by a pass: nothing to vouch for.
		a.mu.Unlock()
		return heartbeat.Answer{Node: b.Node, Nonce: b.Nonce, Seq: b.Seq, Term: term}, ""
	}
	if !wasUp {
		a.revived[b.Node] = a.started
	}
	since, waiting := a.revived[b.Node]
	if waiting && a.completed > since {
		delete(a.revived, b.Node)
		waiting = false
	}
	a.mu.Unlock()
	if !wasUp || switched {
		// A pass decides about a node back from Down; and a node that left the fence
		// turns Down sooner than the passes so far have planned for.
		a.kick()
	}
	ans := heartbeat.Answer{Node: b.Node, Nonce: b.Nonce, Seq: b.Seq, Term: term}
	if !waiting {
		ans.Vouched = gen
	}
	if ans.Vouched != 0 {
		answeredVouched.Inc()
	} else {
		answeredNotVouched.Inc()
	}
	return ans, ""
}

// passStarted notes a pass's start, with the generations of the grants it read and the
// heartbeat keys the nodes' agents publish.
func (a *answerer) passStarted(generations map[string]int64, keys map[string][]string) {
	a.mu.Lock()
	a.started++
	for node, gen := range generations {
		if gen > a.generations[node] {
			a.generations[node] = gen
		}
	}
	for node := range a.generations {
		if _, ok := generations[node]; !ok {
			delete(a.generations, node)
		}
	}
	a.mu.Unlock()
	a.sessions.update(a.key, keys)
}

// wrote notes the generation of a node's grants this controller just wrote.
func (a *answerer) wrote(node string, gen int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen > a.generations[node] {
		a.generations[node] = gen
	}
}

// passCompleted notes that the pass started last wrote everything it decided.
func (a *answerer) passCompleted() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.completed = a.started
}
