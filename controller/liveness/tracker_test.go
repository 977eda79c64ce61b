package liveness

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestTracker(t *testing.T) {
	type step struct {
		advance time.Duration
		observe string // a renewal of worker1, if not empty
		wantUp  bool
	}
	tests := []struct {
		name  string
		steps []step
	}{{
		name: "renewing keeps a node Up",
		steps: []step{
			{observe: "r1", wantUp: true},
			{advance: 2 * time.Second, observe: "r2", wantUp: true},
			{advance: 2 * time.Second, observe: "r3", wantUp: true},
			{advance: 2 * time.Second, observe: "r4", wantUp: true},
		},
	}, {
		name: "a node is Down only after the lease duration and the grace",
		steps: []step{
			{observe: "r1", wantUp: true},
			{advance: 2999 * time.Millisecond, wantUp: true},
			{advance: time.Millisecond, wantUp: false},
		},
	}, {
		name: "seeing the same renewal again is no renewal",
		steps: []step{
			{observe: "r1", wantUp: true},
			{advance: 2 * time.Second, observe: "r1", wantUp: true},
			{advance: time.Second, observe: "r1", wantUp: false},
		},
	}, {
		name: "a Down node that renews is Up again",
		steps: []step{
			{observe: "r1", wantUp: true},
			{advance: 5 * time.Second, wantUp: false},
			{observe: "r2", wantUp: true},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
			tr := NewTracker(clk, time.Second)
			for i, s := range tt.steps {
				clk.SetTime(clk.Now().Add(s.advance))
				if s.observe != "" {
					tr.Observe("worker1", s.observe, 2*time.Second)
				}
				if got := tr.Up("worker1"); got != s.wantUp {
					t.Fatalf("step %d: Up = %v, want %v", i, got, s.wantUp)
				}
			}
		})
	}
}

func TestNeverSeenAndForgottenAreDown(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	tr := NewTracker(clk, time.Second)
	if tr.Up("ghost") {
		t.Error("a node never seen is Up")
	}
	tr.Observe("worker1", "r1", 2*time.Second)
	tr.Forget("worker1")
	if tr.Up("worker1") {
		t.Error("a forgotten node is Up")
	}
}

func TestDownAt(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	tr := NewTracker(clk, time.Second)
	tr.Observe("worker1", "r1", 2*time.Second)
	if _, down := tr.DownAt("worker1"); down {
		t.Error("DownAt says Down while the lease is fresh")
	}
	clk.SetTime(clk.Now().Add(5 * time.Second))
	if at, down := tr.DownAt("worker1"); !down || !at.Equal(time.Unix(1003, 0)) {
		t.Errorf("DownAt = %v, %v; want 1003s (seen at 1000s + 2s lease + 1s grace), true", at, down)
	}
}

func TestNextDown(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	tr := NewTracker(clk, time.Second)
	if _, ok := tr.NextDown(); ok {
		t.Error("NextDown with no node")
	}
	tr.Observe("worker1", "r1", 2*time.Second)
	clk.SetTime(clk.Now().Add(time.Second))
	tr.Observe("worker2", "r1", 2*time.Second)
	if got, ok := tr.NextDown(); !ok || got != 2*time.Second {
		t.Errorf("NextDown = %v, %v; want 2s (worker1's lease, seen 1s ago, plus 1s grace)", got, ok)
	}
}

// TestAPIServerOutageMovesNothing: while the API server is away no renewal arrives; when
// it is back, renewals arrive one after another, and none of the nodes that kept renewing
// may look Down in between. A node that died during the outage turns Down a lease later.
func TestAPIServerOutageMovesNothing(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	tr := NewTracker(clk, 500*time.Millisecond)
	for _, n := range []string{"worker1", "worker2", "worker3"} {
		tr.Observe(n, "r1", time.Second)
	}
	clk.SetTime(clk.Now().Add(200 * time.Millisecond))
	for _, n := range []string{"worker1", "worker2", "worker3"} {
		tr.Observe(n, "r2", time.Second)
	}
	clk.SetTime(clk.Now().Add(60 * time.Second)) // the outage
	tr.Observe("worker1", "r50", time.Second)    // the first renewal after it
	for _, n := range []string{"worker2", "worker3"} {
		if !tr.Up(n) {
			t.Errorf("%s is Down right after the API server came back", n)
		}
	}
	clk.SetTime(clk.Now().Add(100 * time.Millisecond))
	tr.Observe("worker2", "r51", time.Second) // worker3 died during the outage
	clk.SetTime(clk.Now().Add(time.Second))
	tr.Observe("worker1", "r52", time.Second)
	tr.Observe("worker2", "r53", time.Second)
	clk.SetTime(clk.Now().Add(500 * time.Millisecond))
	if tr.Up("worker3") {
		t.Error("worker3, silent for a lease and a grace after the outage, is still Up")
	}
	if !tr.Up("worker1") || !tr.Up("worker2") {
		t.Error("a renewing node is Down")
	}
}

// TestHeard: a beat over the direct channel renews like a Lease, and tells whether the
// node was Up just before it.
func TestHeard(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	tr := NewTracker(clk, 200*time.Millisecond)
	if up, switched := tr.Heard("worker1", 600*time.Millisecond, true); up || !switched {
		t.Errorf("first beat: up %v, switched %v; want a node never seen Down, and switched by a beat in this term", up, switched)
	}
	clk.SetTime(clk.Now().Add(700 * time.Millisecond))
	if up, switched := tr.Heard("worker1", 600*time.Millisecond, true); !up || switched {
		t.Errorf("a node heard 700 ms ago (lease 600 ms, grace 200 ms): up %v, switched %v; want Up, and switched before", up, switched)
	}
	clk.SetTime(clk.Now().Add(800 * time.Millisecond))
	if tr.Up("worker1") {
		t.Error("Up 800 ms after the last beat")
	}
	if up, _ := tr.Heard("worker1", 600*time.Millisecond, true); up {
		t.Error("a node Down before its beat was reported Up")
	}
	if !tr.Up("worker1") {
		t.Error("a beat did not bring the node back Up")
	}
}

// TestFence: after a new leader's fence, a node that has not sent a beat in the new term
// stays Up until the fence plus its lease and grace, since the earlier leader may still
// answer it; a node that switched is judged by its beats alone.
func TestFence(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	tr := NewTracker(clk, 200*time.Millisecond)
	lease := 600 * time.Millisecond
	tr.Observe("stale", "r1", lease)
	tr.Heard("switched", lease, false)
	tr.Fence(clk.Now().Add(10 * time.Second))
	if _, switched := tr.Heard("switched", lease, true); !switched {
		t.Error("the first beat in the new term did not switch the node")
	}
	clk.SetTime(clk.Now().Add(5 * time.Second))
	if tr.Up("switched") {
		t.Error("a node that switched to the new leader and went silent is still Up")
	}
	if !tr.Up("stale") {
		t.Error("a node the earlier leader may still answer is Down within the fence")
	}
	if next, ok := tr.NextDown(); !ok || next != 5*time.Second+lease+200*time.Millisecond {
		t.Errorf("NextDown = %v, %v; want the fence's end plus lease and grace (5.8s)", next, ok)
	}
	clk.SetTime(clk.Now().Add(5*time.Second + lease + 200*time.Millisecond))
	if tr.Up("stale") {
		t.Error("Up after the fence, lease and grace")
	}
	if at, down := tr.DownAt("stale"); !down || !at.Equal(time.Unix(1010, 0).Add(lease+200*time.Millisecond)) {
		t.Errorf("DownAt = %v, %v; want the fence's end plus lease and grace", at, down)
	}
}
