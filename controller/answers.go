package controller

import (
	"sync"
	"time"

	"github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/controller/liveness"
)

// Longest and shortest lease a beat may ask for.
const (
	minBeatLease = 100 * time.Millisecond
	maxBeatLease = 5 * time.Minute
)

// answerer answers node agents' beats. It vouches for the newest generation of a node's
// grants this controller knows of (from its cache, or from its own writes, whichever is
// newer); the agent extends its grants only if its cache holds that generation.
//
// A node that was Down when its beat came is not vouched for until a pass that started
// after the beat has completed: the pass that saw it Down may be writing its IPs to other
// nodes right now, and its own spec may not say so yet.
type answerer struct {
	tracker *liveness.Tracker
	term    func() (uint64, bool)
	kick    func() // asks for a pass

	mu          sync.Mutex
	generations map[string]int64  // node → newest generation of its grants known here
	revived     map[string]uint64 // node → passes started when it came back
	started     uint64            // passes started
	completed   uint64            // passes that started and wrote everything, in order
}

func newAnswerer(tracker *liveness.Tracker, term func() (uint64, bool), kick func()) *answerer {
	return &answerer{tracker: tracker, term: term, kick: kick,
		generations: map[string]int64{}, revived: map[string]uint64{}}
}

// answer decides the answer to one beat; false sends none.
func (a *answerer) answer(b heartbeat.Beat) (heartbeat.Answer, bool) {
	term, ok := a.term()
	if !ok || b.Term > term {
		return heartbeat.Answer{}, false // not answering, or the agent follows a newer leader
	}
	lease := time.Duration(b.LeaseMillis) * time.Millisecond
	if lease < minBeatLease || lease > maxBeatLease {
		beatsDropped.WithLabelValues("bad-lease").Inc()
		return heartbeat.Answer{}, false
	}
	a.mu.Lock()
	gen, known := a.generations[b.Node]
	a.mu.Unlock()
	if !known {
		// No NetworkGatewayNode seen yet: nothing to vouch for, nothing to track.
		return heartbeat.Answer{Node: b.Node, Seq: b.Seq, Term: term}, true
	}
	wasUp, switched := a.tracker.Heard(b.Node, lease, b.Term == term)
	a.mu.Lock()
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
	ans := heartbeat.Answer{Node: b.Node, Seq: b.Seq, Term: term}
	if !waiting {
		ans.Vouched = gen
	}
	beatsAnswered.WithLabelValues(vouchLabel(ans.Vouched != 0)).Inc()
	return ans, true
}

func vouchLabel(v bool) string {
	if v {
		return "vouched"
	}
	return "not-vouched"
}

// passStarted notes a pass's start, and the generations of the grants it read.
func (a *answerer) passStarted(generations map[string]int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
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
