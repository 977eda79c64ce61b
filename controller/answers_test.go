package controller

import (
	"strconv"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/controller/liveness"
)

func TestAnswers(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	tracker := liveness.NewTracker(clk, 200*time.Millisecond)
	answering, kicks := true, 0
	a := newAnswerer(tracker, func() (uint64, bool) { return 7, answering }, func() { kicks++ })
	beat := func(term uint64) (heartbeat.Answer, bool) {
		return a.answer(heartbeat.Beat{Node: "worker1", Seq: 5, Term: term, Generation: 3, LeaseMillis: 600})
	}

	if ans, ok := beat(7); !ok || ans.Vouched != 0 {
		t.Errorf("a node with no NetworkGatewayNode seen: %+v, %v; want an answer vouching for nothing", ans, ok)
	}
	a.passStarted(map[string]int64{"worker1": 3})
	tracker.Observe("worker1", "r1", 600*time.Millisecond)
	a.passCompleted()
	if ans, ok := beat(6); !ok || ans.Vouched != 3 || ans.Term != 7 || ans.Seq != 5 {
		t.Errorf("an Up node: %+v, %v; want seq 5, term 7, vouching for generation 3", ans, ok)
	}
	a.wrote("worker1", 4)
	if ans, _ := beat(7); ans.Vouched != 4 || kicks != 1 {
		t.Errorf("after writing generation 4 the answer vouches for %d; %d kicks, want 1 (the node switched to this term)", ans.Vouched, kicks)
	}
	if _, ok := beat(8); ok {
		t.Error("answered an agent that follows a newer leader")
	}
	if _, ok := a.answer(heartbeat.Beat{Node: "worker1", Seq: 1, Term: 7, LeaseMillis: 10}); ok {
		t.Error("answered a beat asking for a 10 ms lease")
	}

	// Down, then back: not vouched for until a pass that started after the beat completes.
	clk.SetTime(clk.Now().Add(time.Second))
	a.passStarted(map[string]int64{"worker1": 4}) // a pass in progress sees it Down
	if ans, ok := beat(7); !ok || ans.Vouched != 0 || kicks != 2 {
		t.Errorf("a node back from Down: %+v, %v, %d kicks; want an answer vouching for nothing, and a pass asked for", ans, ok, kicks)
	}
	a.passCompleted() // the pass that saw it Down
	if ans, _ := beat(7); ans.Vouched != 0 {
		t.Errorf("vouched for generation %d after only the pass that saw the node Down", ans.Vouched)
	}
	a.passStarted(map[string]int64{"worker1": 5})
	if ans, _ := beat(7); ans.Vouched != 0 {
		t.Error("vouched during the pass that started after the node came back")
	}
	a.passCompleted()
	if ans, _ := beat(7); ans.Vouched != 5 {
		t.Errorf("after a full pass since it came back: vouched %d, want 5", ans.Vouched)
	}

	answering = false
	if _, ok := beat(7); ok {
		t.Error("answered while not answering")
	}
}

// BenchmarkAnswer: the leader's cost per heartbeat, with 1,000 nodes; at 10 heartbeats a
// second per node that is 10,000 answers a second.
func BenchmarkAnswer(b *testing.B) {
	tracker := liveness.NewTracker(clocktesting.NewFakePassiveClock(time.Unix(1000, 0)), 200*time.Millisecond)
	a := newAnswerer(tracker, func() (uint64, bool) { return 2, true }, func() {})
	gens := map[string]int64{}
	var beats []heartbeat.Beat
	for i := range 1000 {
		name := "node-" + strconv.Itoa(i)
		gens[name] = 3
		beats = append(beats, heartbeat.Beat{Node: name, Seq: 1, Term: 2, Generation: 3, LeaseMillis: 1000})
	}
	a.passStarted(gens)
	a.passCompleted()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := a.answer(beats[i%len(beats)]); !ok {
			b.Fatal("not answered")
		}
	}
}
