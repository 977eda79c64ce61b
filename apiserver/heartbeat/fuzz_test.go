package heartbeat

import (
	"bytes"
	"testing"
)

// FuzzOpenAnswer: no datagram makes OpenAnswer panic, and none opens on the agent's side
// but one the leader sealed for this session. A beat (the other direction, under the other
// key) never opens as an answer, and a sealed answer with any byte flipped never opens.
func FuzzOpenAnswer(f *testing.F) {
	agent, leader := pair(f, "worker-1")
	good, err := leader.SealAnswer(nil, Answer{Node: "worker-1", Nonce: 1, Seq: 5, Term: 2, Vouched: 3})
	if err != nil {
		f.Fatal(err)
	}
	beat, err := agent.SealBeat(nil, Beat{Node: "worker-1", Nonce: 1, Seq: 5, Term: 2, Generation: 3, LeaseMillis: 1000})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, uint16(0))
	f.Add(beat, uint16(0))
	f.Add(good[:header], uint16(0))
	f.Add(good, uint16(len(good)-1))
	f.Fuzz(func(t *testing.T, data []byte, flip uint16) {
		if a, err := agent.OpenAnswer(data); err == nil && !bytes.Equal(data, good) {
			t.Fatalf("an answer the leader did not seal opened: %+v", a)
		}
		tampered := bytes.Clone(good)
		tampered[int(flip)%len(tampered)] ^= 0x01
		if a, err := agent.OpenAnswer(tampered); err == nil {
			t.Fatalf("an answer with byte %d flipped opened: %+v", int(flip)%len(tampered), a)
		}
	})
}
