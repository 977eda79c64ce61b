package nodeagent

import (
	"context"
	"math"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

func beatMetrics() *metrics {
	return &metrics{beats: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"event"})}
}

// TestBeatAnswers: an answer extends the grant from when its beat was sent, only if it
// vouches for the generation the agent holds, and never from an earlier leader.
func TestBeatAnswers(t *testing.T) {
	now := 10 * time.Second
	clock := func() time.Duration { return now }
	gen := int64(4)
	var lapsedSeen []bool
	behind := 0
	keys, err := newBeatKeys(0)
	if err != nil {
		t.Fatal(err)
	}
	b := &beater{
		node: "worker1", lease: 600 * time.Millisecond, now: clock, keys: keys,
		beat:       &heartbeat{duration: 600 * time.Millisecond, now: clock},
		generation: func() int64 { return gen },
		extended:   func(lapsed bool) { lapsedSeen = append(lapsedSeen, lapsed) },
		behind:     func() { behind++ },
		republish:  func() {},
		m:          beatMetrics(),
	}
	send := func() uint64 { // what send does for one beat
		b.seq++
		b.sent[b.seq%uint64(len(b.sent))] = sentBeat{seq: b.seq, at: now}
		return b.seq
	}
	answer := func(seq, term uint64, vouched int64) {
		b.handle(hb.Answer{Node: "worker1", Nonce: keys.nonce, Seq: seq, Term: term, Vouched: vouched}, keys.current)
	}
	seq := send()
	now += 50 * time.Millisecond
	answer(seq, 2, 4)
	if got := b.beat.grantExpiry(); got != 10*time.Second+600*time.Millisecond {
		t.Fatalf("grant expiry %v, want the lease after the beat was sent (10.6s)", got)
	}
	if len(lapsedSeen) != 1 || !lapsedSeen[0] {
		t.Errorf("extensions seen %v, want one, from a lapsed grant", lapsedSeen)
	}

	now += 100 * time.Millisecond
	seq = send()
	answer(seq, 1, 4)
	answer(seq, 2, 3)
	answer(seq, 2, 0)
	answer(seq+1, 2, 4)
	b.handle(hb.Answer{Node: "worker1", Nonce: keys.nonce + 1, Seq: seq, Term: 2, Vouched: 4}, keys.current)
	if got := b.beat.grantExpiry(); got != 10*time.Second+600*time.Millisecond {
		t.Errorf("grant extended to %v by an earlier leader, another generation, no vouching, an unknown beat or another start's nonce", got)
	}
	// An answer to a beat never sent does not move the term either.
	answer(seq+1, math.MaxUint64, 4)
	if b.term != 2 {
		t.Fatalf("term %d after an answer to a beat never sent, want 2", b.term)
	}
	answer(seq, 3, 4)
	if got, want := b.beat.grantExpiry(), 10*time.Second+750*time.Millisecond; got != want {
		t.Errorf("grant expiry %v, want %v", got, want)
	}
	if behind != 0 {
		t.Errorf("%d reads of the grants asked for; no answer vouched for a newer generation", behind)
	}
	answer(seq, 3, 5)
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

// fakeLeader answers beats on loopback with the heartbeat package, as the controller's
// leader does: under the keys the agent publishes, vouching for one generation.
type fakeLeader struct {
	key  *hb.KeyPair
	conn *net.UDPConn
	term uint64

	mu        sync.Mutex
	published []string
	answered  map[string]int // agent key → answers sent under it
	beats     int
}

func newFakeLeader(t *testing.T) *fakeLeader {
	t.Helper()
	key, err := hb.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	l := &fakeLeader{key: key, conn: conn, term: 5, answered: map[string]int{}}
	go l.serve()
	return l
}

func (l *fakeLeader) addr() netip.AddrPort { return l.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (l *fakeLeader) leader() hb.Leader { return hb.Leader{Addr: l.addr(), Key: l.key.Public} }

func (l *fakeLeader) publish(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.published = keys
}

func (l *fakeLeader) serve() {
	buf := make([]byte, 512)
	sessions := map[hb.SessionID]*hb.Session{}
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		l.mu.Lock()
		for _, k := range l.published {
			pub, _ := hb.ParsePublicKey(k)
			if s, err := hb.NewLeaderSession(l.key, pub, "worker1"); err == nil {
				sessions[s.ID] = s
			}
		}
		l.mu.Unlock()
		beat, s, err := hb.OpenBeat(buf[:n], func(id hb.SessionID) *hb.Session { return sessions[id] })
		if err != nil {
			continue
		}
		out, _ := s.SealAnswer(nil, hb.Answer{Node: beat.Node, Nonce: beat.Nonce, Seq: beat.Seq, Term: l.term, Vouched: 4})
		l.mu.Lock()
		l.beats++
		for _, k := range l.published {
			pub, _ := hb.ParsePublicKey(k)
			if ss, _ := hb.NewLeaderSession(l.key, pub, "worker1"); ss != nil && ss.ID == s.ID {
				l.answered[k]++
			}
		}
		l.mu.Unlock()
		_, _ = l.conn.WriteToUDPAddrPort(out, from)
	}
}

// beaterTo is a beater of worker1 sending to the fake leader.
func beaterTo(t *testing.T, l *fakeLeader, keys *beatKeys) (*beater, *heartbeat, func() []string) {
	t.Helper()
	clock := func() time.Duration { return monotonic() }
	beat := &heartbeat{duration: time.Second, now: clock}
	var mu sync.Mutex
	var republished []string
	b := &beater{
		node: "worker1", interval: 10 * time.Millisecond, lease: time.Second, now: clock, beat: beat, keys: keys,
		leader:     func() (hb.Leader, bool) { return l.leader(), true },
		generation: func() int64 { return 4 },
		extended:   func(bool) {},
		behind:     func() {}, unanswered: func() {},
		republish: func() {
			list, version := keys.list()
			l.publish(list) // as the next report does
			keys.wrote(version)
			mu.Lock()
			republished = append(republished, list[0])
			mu.Unlock()
		},
		m: beatMetrics(),
	}
	return b, beat, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), republished...) }
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
	}
}

// TestBeaterTakesOnlyTheLeader: over real UDP, the agent's answers come from the
// leader's address only (its socket is connected), and an answer whose MAC does not
// verify, even one poisoning the term, changes nothing.
func TestBeaterTakesOnlyTheLeader(t *testing.T) {
	l := newFakeLeader(t)
	keys, err := newBeatKeys(0)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := keys.list()
	l.publish(list)
	b, beat, _ := beaterTo(t, l, keys)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = b.run(ctx) }()
	eventually(t, "no vouched answer", func() bool { return beat.lastVouched() != 0 })
	b.mu.Lock()
	term := b.term
	b.mu.Unlock()
	if term != 5 {
		t.Fatalf("term %d, want the leader's, 5", term)
	}

	// Someone else on the host sends answers to every port the agent could use: with
	// a term of 2^64-1, under a key the leader does not hold.
	rogue, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	forger, err := hb.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	s, err := hb.NewLeaderSession(forger, keys.current.Public, "worker1")
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	seq := b.seq
	b.mu.Unlock()
	poison, err := s.SealAnswer(nil, hb.Answer{Node: "worker1", Nonce: keys.nonce, Seq: seq, Term: math.MaxUint64, Vouched: 4})
	if err != nil {
		t.Fatal(err)
	}
	// The session the leader really has with the agent, and a MAC that does not verify.
	real, err := hb.NewLeaderSession(l.key, keys.current.Public, "worker1")
	if err != nil {
		t.Fatal(err)
	}
	badMAC, err := real.SealAnswer(nil, hb.Answer{Node: "worker1", Nonce: keys.nonce, Seq: seq, Term: math.MaxUint64, Vouched: 4})
	if err != nil {
		t.Fatal(err)
	}
	badMAC[len(badMAC)-1] ^= 1
	// To the agent's own port, as ss would show it: from another socket, which the
	// connected socket never hands the agent; then from the leader's own socket, as a
	// spoofed source address would.
	agentPort := agentSocket(t, b)
	if _, err := rogue.WriteToUDPAddrPort(poison, agentPort); err != nil {
		t.Fatal(err)
	}
	if _, err := l.conn.WriteToUDPAddrPort(poison, agentPort); err != nil {
		t.Fatal(err)
	}
	if _, err := l.conn.WriteToUDPAddrPort(badMAC, agentPort); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the forged answers from the leader's address were not refused", func() bool {
		return testutil.ToFloat64(b.m.beats.WithLabelValues("unknown-session")) >= 1 && testutil.ToFloat64(b.m.beats.WithLabelValues("bad-mac")) >= 1
	})
	time.Sleep(50 * time.Millisecond)
	if n := testutil.ToFloat64(b.m.beats.WithLabelValues("unknown-session")); n != 1 {
		t.Errorf("%v answers under an unknown key reached the agent, want 1: the one from another address was delivered", n)
	}
	b.mu.Lock()
	term = b.term
	b.mu.Unlock()
	if term != 5 {
		t.Fatalf("term %d after the forged answers, want 5: the agent would ignore every real leader", term)
	}
	before := beat.lastVouched()
	eventually(t, "the leader's answers stopped counting after the forgery", func() bool { return beat.lastVouched() > before })
}

// agentSocket is the local address of the beater's socket, once it has one.
func agentSocket(t *testing.T, b *beater) netip.AddrPort {
	t.Helper()
	var ap netip.AddrPort
	eventually(t, "the beater has no socket", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.local.IsValid() {
			ap = b.local
		}
		return ap.IsValid()
	})
	return ap
}

// TestKeyRotation: a new key takes over with every beat answered: the old key stays in
// use until the new one is published and answered, and then retires.
func TestKeyRotation(t *testing.T) {
	l := newFakeLeader(t)
	keys, err := newBeatKeys(200 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := keys.list()
	l.publish(first)
	b, beat, republished := beaterTo(t, l, keys)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = b.run(ctx) }()
	eventually(t, "no vouched answer", func() bool { return beat.lastVouched() != 0 })
	eventually(t, "no rotation retired the first key", func() bool {
		list, _ := keys.list()
		return len(list) == 1 && list[0] != first[0] && len(republished()) >= 2
	})
	cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.answered[first[0]] == 0 {
		t.Error("no beat was answered under the first key")
	}
	b.mu.Lock()
	sent := b.seq
	b.mu.Unlock()
	if unanswered := int(sent) - l.beats; unanswered > 2 {
		t.Errorf("%d beats sent, %d reached the leader: a rotation lost beats (a beat in flight at the end may be missing)", sent, l.beats)
	}
	if bad := testutil.ToFloat64(b.m.beats.WithLabelValues("unknown-session")) + testutil.ToFloat64(b.m.beats.WithLabelValues("bad-mac")); bad != 0 {
		t.Errorf("%v answers the agent could not open", bad)
	}
}
