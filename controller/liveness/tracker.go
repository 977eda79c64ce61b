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
	// fence: until then, a node that has not switched to this leader is Up, since an
	// earlier leader may still be answering its beats (Fence).
	fence time.Time
}

type heartbeat struct {
	renewal  string        // what identifies the last renewal, e.g. the Lease's renewTime
	seen     time.Time     // when this process saw it change, with a monotonic reading
	duration time.Duration // how long a renewal is valid, from the Lease
	// leased is the duration the node's heartbeat Lease gives, which only its agent may
	// write; zero until the Lease is seen.
	leased time.Duration
	// switched: the node's agent has sent a beat carrying this leader's term, so it no
	// longer accepts answers from an earlier leader, and the fence no longer covers it.
	switched bool
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
		t.nodes[node] = &heartbeat{renewal: renewal, seen: now, duration: duration, leased: duration}
		return
	}
	hb.duration, hb.leased = duration, duration
	if hb.renewal == renewal {
		return
	}
	hb.renewal = renewal
	t.saw(hb, now)
}

// Heard records a beat that came over the direct channel, valid for duration, and
// returns whether the node was Up just before it, and whether it just switched to this
// leader, which may bring its Down time forward (out of the fence). current says the beat
// carried this leader's term.
func (t *Tracker) Heard(node string, duration time.Duration, current bool) (wasUp, switched bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.heard(node, duration, current)
}

// HeardLeased is Heard for a beat that must ask for the lease the node's heartbeat Lease
// gives, and no other: one asking for longer would keep a dead node Up, one asking for
// shorter would move its IPs while it still holds them. A beat of a node whose Lease was
// never seen, or asking for another lease, is not recorded, and reason says why:
// "unknown-node" or "bad-lease".
func (t *Tracker) HeardLeased(node string, duration time.Duration, current bool) (wasUp, switched bool, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	hb, ok := t.nodes[node]
	switch {
	case !ok || hb.leased == 0:
		return false, false, "unknown-node"
	case duration != hb.leased:
		return false, false, "bad-lease"
	}
	wasUp, switched = t.heard(node, duration, current)
	return wasUp, switched, ""
}

func (t *Tracker) heard(node string, duration time.Duration, current bool) (wasUp, switched bool) {
	now := t.clock.Now()
	hb, ok := t.nodes[node]
	if !ok {
		hb = &heartbeat{duration: duration}
		t.nodes[node] = hb
	}
	wasUp = ok && t.upAt(hb, now)
	hb.duration = duration
	switched = current && !hb.switched
	hb.switched = hb.switched || current
	t.saw(hb, now)
	return wasUp, switched
}

// saw notes a renewal of hb at now.
func (t *Tracker) saw(hb *heartbeat, now time.Time) {
	if !t.lastAny.IsZero() && now.Sub(t.lastAny) > hb.duration {
		for _, other := range t.nodes {
			other.seen = now
		}
	}
	hb.seen, t.lastAny = now, now
}

// Fence keeps every node Up until a lease and grace past the given time unless its agent switches to this
// leader (Heard with current): a new leader does not know which beats an earlier one
// answered, and an earlier leader cut off from the API server answers for a bounded time
// after it last held the leadership.
func (t *Tracker) Fence(until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fence = until
	for _, hb := range t.nodes {
		hb.switched = false
	}
}

// upAt says whether hb is Up at now.
func (t *Tracker) upAt(hb *heartbeat, now time.Time) bool {
	return now.Before(t.downAt(hb))
}

// downAt is when hb turns Down if nothing is renewed.
func (t *Tracker) downAt(hb *heartbeat) time.Time {
	at := hb.seen.Add(hb.duration + t.grace)
	// An earlier leader's last answer, before the fence ends, grants up to a lease more.
	if fenced := t.fence.Add(hb.duration + t.grace); !hb.switched && !t.fence.IsZero() && fenced.After(at) {
		return fenced
	}
	return at
}

// LeaseDuration is the duration the node's heartbeat Lease gives, if its Lease has been
// seen: the only lease a beat of the node's may ask for.
func (t *Tracker) LeaseDuration(node string) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	hb, ok := t.nodes[node]
	if !ok || hb.leased == 0 {
		return 0, false
	}
	return hb.leased, true
}

// Forget drops a node whose heartbeat object is gone; it is Down from now on.
func (t *Tracker) Forget(node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.nodes, node)
}

// Up reports whether the node's last renewal, as seen here, is still within its lease
// duration plus the grace, or the node is within a fence.
func (t *Tracker) Up(node string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	hb, ok := t.nodes[node]
	return ok && t.upAt(hb, t.clock.Now())
}

// DownAt returns when the node's heartbeat lapsed, on this process's clock, if it has.
func (t *Tracker) DownAt(node string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	hb, ok := t.nodes[node]
	if !ok {
		return time.Time{}, false
	}
	at := t.downAt(hb)
	return at, !t.clock.Now().Before(at)
}

// NextDown returns how long until the first node that is Up now turns Down if nothing is
// renewed, and false if no node is Up.
func (t *Tracker) NextDown() (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	var next time.Duration
	found := false
	for _, hb := range t.nodes {
		left := t.downAt(hb).Sub(now)
		if left > 0 && (!found || left < next) {
			next, found = left, true
		}
	}
	return next, found
}
