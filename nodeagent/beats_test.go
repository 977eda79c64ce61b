package nodeagent

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// TestBeatAnswers: an answer extends the grant from when its beat was sent, only if it
// vouches for the generation the agent holds, and never from an earlier leader.
func TestBeatAnswers(t *testing.T) {
	now := 10 * time.Second
	clock := func() time.Duration { return now }
	gen := int64(4)
	var lapsedSeen []bool
	behind := 0
	b := &beater{
		node: "worker1", lease: 600 * time.Millisecond, now: clock,
		beat:       &heartbeat{duration: 600 * time.Millisecond, now: clock},
		generation: func() int64 { return gen },
		extended:   func(lapsed bool) { lapsedSeen = append(lapsedSeen, lapsed) },
		behind:     func() { behind++ },
		m:          &metrics{beats: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"event"})},
	}
	send := func() uint64 { // what run does for one beat
		b.seq++
		b.sent[b.seq%uint64(len(b.sent))] = sentBeat{seq: b.seq, at: now}
		return b.seq
	}
	seq := send()
	now += 50 * time.Millisecond
	b.handle(hb.Answer{Node: "worker1", Seq: seq, Term: 2, Vouched: 4})
	if got := b.beat.grantExpiry(); got != 10*time.Second+600*time.Millisecond {
		t.Fatalf("grant expiry %v, want the lease after the beat was sent (10.6s)", got)
	}
	if len(lapsedSeen) != 1 || !lapsedSeen[0] {
		t.Errorf("extensions seen %v, want one, from a lapsed grant", lapsedSeen)
	}

	now += 100 * time.Millisecond
	seq = send()
	b.handle(hb.Answer{Node: "worker1", Seq: seq, Term: 1, Vouched: 4})
	b.handle(hb.Answer{Node: "worker1", Seq: seq, Term: 2, Vouched: 3})
	b.handle(hb.Answer{Node: "worker1", Seq: seq, Term: 2, Vouched: 0})
	b.handle(hb.Answer{Node: "worker1", Seq: seq + 1, Term: 2, Vouched: 4})
	if got := b.beat.grantExpiry(); got != 10*time.Second+600*time.Millisecond {
		t.Errorf("grant extended to %v by an earlier leader, another generation, no vouching or an unknown beat", got)
	}
	b.handle(hb.Answer{Node: "worker1", Seq: seq, Term: 3, Vouched: 4})
	if got, want := b.beat.grantExpiry(), 10*time.Second+750*time.Millisecond; got != want {
		t.Errorf("grant expiry %v, want %v", got, want)
	}
	if behind != 0 {
		t.Errorf("%d reads of the grants asked for; no answer vouched for a newer generation", behind)
	}
	b.handle(hb.Answer{Node: "worker1", Seq: seq, Term: 3, Vouched: 5})
	if behind != 1 {
		t.Errorf("an answer vouching for generation 5 while the cache holds 4 asked for %d direct reads, want 1", behind)
	}
	if b.term != 3 {
		t.Errorf("term %d, want 3 (the newest leader's)", b.term)
	}
	if len(lapsedSeen) != 2 || lapsedSeen[1] {
		t.Errorf("extensions seen %v, want a second one, from a live grant", lapsedSeen)
	}
}
