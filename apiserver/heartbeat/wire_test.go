package heartbeat

import (
	"errors"
	"strings"
	"testing"
)

// pair is an agent's and the leader's session for one node, as each side derives it from
// its own key and the other's published one.
func pair(t testing.TB, node string) (agent, leader *Session) {
	t.Helper()
	a, err := NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	if agent, err = NewAgentSession(a, l.Public, node); err != nil {
		t.Fatal(err)
	}
	if leader, err = NewLeaderSession(l, a.Public, node); err != nil {
		t.Fatal(err)
	}
	return agent, leader
}

func only(s *Session) func(SessionID) *Session {
	return func(id SessionID) *Session {
		if id == s.ID {
			return s
		}
		return nil
	}
}

func TestRoundTrip(t *testing.T) {
	agent, leader := pair(t, "worker-1")
	if agent.ID != leader.ID {
		t.Fatalf("the two sides name the session %x and %x", agent.ID, leader.ID)
	}
	b := Beat{Node: "worker-1", Nonce: 0xfeed, Seq: 1<<40 + 7, Term: 3, Generation: 12, LeaseMillis: 600}
	data, err := agent.SealBeat(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	got, s, err := OpenBeat(data, only(leader))
	if err != nil || got != b || s != leader {
		t.Fatalf("OpenBeat = %+v, %v; want %+v", got, err, b)
	}
	if id, ok := PeekSession(data); !ok || id != leader.ID {
		t.Errorf("PeekSession = %x, %v", id, ok)
	}
	if _, err := leader.OpenAnswer(data); err == nil {
		t.Error("a beat opened as an answer")
	}
	a := Answer{Node: "worker-1", Nonce: 0xfeed, Seq: 9, Term: 4, Vouched: 12}
	if data, err = leader.SealAnswer(nil, a); err != nil {
		t.Fatal(err)
	}
	if got, err := agent.OpenAnswer(data); err != nil || got != a {
		t.Fatalf("OpenAnswer = %+v, %v; want %+v", got, err, a)
	}
}

// TestForgeries: what someone without the session's keys can make of a datagram never
// opens, and a node's session never speaks for another node.
func TestForgeries(t *testing.T) {
	agent, leader := pair(t, "worker-1")
	other, otherLeader := pair(t, "worker-2")
	good, err := agent.SealBeat(nil, Beat{Node: "worker-1", Nonce: 1, Seq: 5, Term: 2, Generation: 3, LeaseMillis: 1000})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := append([]byte{}, good...)
		b[i] ^= 1
		return b
	}
	sessions := func(id SessionID) *Session {
		switch id {
		case leader.ID:
			return leader
		case otherLeader.ID:
			return otherLeader
		}
		return nil
	}
	otherBeat, err := other.SealBeat(nil, Beat{Node: "worker-2", Seq: 1, LeaseMillis: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// worker-2's key, its session id and MAC, and worker-1's name.
	impostor := append(append([]byte{}, otherBeat[:header-1]...), byte(len("worker-1")))
	impostor = append(impostor, "worker-1"...)
	impostor = append(impostor, otherBeat[header+len("worker-2"):]...)
	bodyStart := header + len("worker-1") + len(SessionID{})
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"wrong magic", append([]byte("XXXX"), good[4:]...), ErrMalformed},
		{"version 1", flip(4), ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing byte", append(append([]byte{}, good...), 0), ErrMalformed},
		{"a node name changed", flip(header), ErrBadMAC},
		{"the nonce changed", flip(bodyStart + 7), ErrBadMAC},
		{"the seq changed", flip(bodyStart + 15), ErrBadMAC},
		{"the term raised", flip(bodyStart + 16), ErrBadMAC},
		{"the lease changed", flip(len(good) - macSize - 1), ErrBadMAC},
		{"the MAC changed", flip(len(good) - 1), ErrBadMAC},
		{"an unknown session", flip(header + len("worker-1")), ErrUnknownSession},
		{"another node's session, this node's name", impostor, ErrBadMAC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b, _, err := OpenBeat(tc.data, sessions); !errors.Is(err, tc.want) {
				t.Errorf("OpenBeat = %+v, %v; want %v", b, err, tc.want)
			}
		})
	}
	// An answer of the leader's is not a beat, and the agent's own beat, sent back, is
	// not an answer: each direction has its own key.
	answer, err := leader.SealAnswer(nil, Answer{Node: "worker-1", Nonce: 1, Seq: 5, Term: 2, Vouched: 3})
	if err != nil {
		t.Fatal(err)
	}
	reflected := append([]byte{}, good[:len(good)-macSize-4]...) // without the lease
	reflected[len(magic)+1] = kindAnswer
	reflected = append(reflected, 0, 0, 0, 0, 0, 0, 0, 1) // a counter
	reflected = append(reflected, good[len(good)-macSize:]...)
	if _, err := agent.OpenAnswer(reflected); !errors.Is(err, ErrBadMAC) {
		t.Errorf("the agent's beat reflected as an answer: %v, want ErrBadMAC", err)
	}
	if _, err := other.OpenAnswer(answer); err == nil {
		t.Error("worker-2 opened worker-1's answer")
	}
}

func TestSessionsRefuseBadInput(t *testing.T) {
	k, err := NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewAgentSession(k, PublicKey{}, "worker-1"); err == nil {
		t.Error("a session with the all-zero key (a low-order point)")
	}
	if _, err := NewAgentSession(k, k.Public, strings.Repeat("n", MaxNodeName+1)); err == nil {
		t.Error("a session for a node name longer than a DNS subdomain")
	}
	agent, _ := pair(t, "worker-1")
	if _, err := agent.SealBeat(nil, Beat{Node: "worker-2"}); err == nil {
		t.Error("worker-1's session sealed a beat of worker-2's")
	}
	if _, err := agent.SealAnswer(nil, Answer{Node: "worker-1"}); err == nil {
		t.Error("an agent's session sealed an answer: it has no counter, so its nonces could repeat")
	}
	if _, err := ParsePublicKey("short"); err == nil {
		t.Error("a key of the wrong size parsed")
	}
	if got, err := ParsePublicKey(k.Public.String()); err != nil || got != k.Public {
		t.Errorf("ParsePublicKey(String()) = %v, %v", got, err)
	}
}

// FuzzOpenBeat: no datagram makes OpenBeat panic, and none opens but one the agent sealed.
func FuzzOpenBeat(f *testing.F) {
	agent, leader := pair(f, "worker-1")
	good, err := agent.SealBeat(nil, Beat{Node: "worker-1", Nonce: 1, Seq: 5, Term: 2, Generation: 3, LeaseMillis: 1000})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:header])
	f.Add([]byte("EGWB\x02\x01\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, _, err := OpenBeat(data, only(leader))
		if err == nil && string(data) != string(good) {
			t.Fatalf("a datagram the agent did not seal opened: %+v", b)
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	agent, leader := pair(b, "worker-1")
	beat := Beat{Node: "worker-1", Nonce: 1, Seq: 5, Term: 2, Generation: 3, LeaseMillis: 1000}
	sessions := only(leader)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = agent.SealBeat(buf[:0], beat); err != nil {
			b.Fatal(err)
		}
		if _, _, err := OpenBeat(buf, sessions); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAnswerNoncesNeverRepeat: a leader that forgets a session (its node took the key out
// of its status and put it back) and answers a replayed beat again does not reuse GCM's
// nonce: the counter is the leader key's, across its sessions.
func TestAnswerNoncesNeverRepeat(t *testing.T) {
	a, err := NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	ans := Answer{Node: "worker-1", Nonce: 1, Seq: 7, Term: 2, Vouched: 3}
	seen := map[string]bool{}
	for range 3 {
		s, err := NewLeaderSession(l, a.Public, "worker-1")
		if err != nil {
			t.Fatal(err)
		}
		data, err := s.SealAnswer(nil, ans)
		if err != nil {
			t.Fatal(err)
		}
		counter := string(data[len(data)-macSize-8 : len(data)-macSize])
		if seen[counter] {
			t.Fatalf("two answers under one key with the counter %x", counter)
		}
		seen[counter] = true
	}
}
