package liveness

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Tracker remembers, per node, when this process last saw its heartbeat change.
type Tracker struct {
	clock clock.PassiveClock
	grace time.Duration

	mu    sync.Mutex
	nodes map[string]*heartbeat
	// lastAny is when any renewal was last seen. A silence longer than a lease duration
	// means this process was cut off from the API server, not that every node died.
	lastAny time.Time
}

type heartbeat struct {
	renewal  string        // what identifies the last renewal, e.g. the Lease's renewTime
	seen     time.Time     // when this process saw it change, with a monotonic reading
	duration time.Duration // how long a renewal is valid, from the Lease
}

// NewTracker returns a Tracker that waits grace beyond a lease's duration before it
// declares a node Down.
func NewTracker(clk clock.PassiveClock, grace time.Duration) *Tracker {
	return &Tracker{clock: clk, grace: grace, nodes: map[string]*heartbeat{}}
}

// Observe records a node's heartbeat. A node seen for the first time, as after a
// controller restart, gets a full lease duration from now: restarts move nothing.
//
// After a silence from every node longer than a lease duration, the first renewal seen
// gives every node a full lease duration from now, as a restart does: the silence was this
// process losing the API server, and nodes that were renewing all along must not look
// dead because their renewals arrive a moment after the first one. A node that really
// died still turns Down one lease duration later.
func (t *Tracker) Observe(node, renewal string, duration time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	hb, ok := t.nodes[node]
	if !ok {
		t.nodes[node] = &heartbeat{renewal: renewal, seen: now, duration: duration}
		return
	}
	hb.duration = duration
	if hb.renewal == renewal {
		return
	}
	if !t.lastAny.IsZero() && now.Sub(t.lastAny) > duration {
		for _, other := range t.nodes {
			other.seen = now
		}
	}
	hb.renewal, hb.seen, t.lastAny = renewal, now, now
}

// Forget drops a node whose heartbeat object is gone; it is Down from now on.
func (t *Tracker) Forget(node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.nodes, node)
}

// Up reports whether the node's last renewal, as seen here, is still within its lease
// duration plus the grace.
func (t *Tracker) Up(node string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	hb, ok := t.nodes[node]
	return ok && t.clock.Since(hb.seen) < hb.duration+t.grace
}

// DownAt returns when the node's heartbeat lapsed, on this process's clock, if it has.
func (t *Tracker) DownAt(node string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	hb, ok := t.nodes[node]
	if !ok {
		return time.Time{}, false
	}
	at := hb.seen.Add(hb.duration + t.grace)
	return at, !t.clock.Now().Before(at)
}

// NextDown returns how long until the first node that is Up now turns Down if nothing is
// renewed, and false if no node is Up.
func (t *Tracker) NextDown() (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var next time.Duration
	found := false
	for _, hb := range t.nodes {
		left := hb.duration + t.grace - t.clock.Since(hb.seen)
		if left > 0 && (!found || left < next) {
			next, found = left, true
		}
	}
	return next, found
}
