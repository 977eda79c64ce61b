package heartbeat

import (
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	b := Beat{Node: "worker-1", Seq: 1<<40 + 7, Term: 3, Generation: 12, LeaseMillis: 600}
	data, err := AppendBeat(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseBeat(data); err != nil || got != b {
		t.Fatalf("ParseBeat = %+v, %v; want %+v", got, err, b)
	}
	if _, err := ParseAnswer(data); err == nil {
		t.Error("a beat parsed as an answer")
	}
	a := Answer{Node: "worker-1", Seq: 9, Term: 4, Vouched: 12}
	if data, err = AppendAnswer(nil, a); err != nil {
		t.Fatal(err)
	}
	if got, err := ParseAnswer(data); err != nil || got != a {
		t.Fatalf("ParseAnswer = %+v, %v; want %+v", got, err, a)
	}
}

func TestMalformed(t *testing.T) {
	good, err := AppendBeat(nil, Beat{Node: "n", Seq: 1, LeaseMillis: 600})
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"empty":         nil,
		"wrong magic":   append([]byte("XXXX"), good[4:]...),
		"wrong version": append(append([]byte{}, good[:4]...), append([]byte{9}, good[5:]...)...),
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte{}, good...), 0),
	}
	for name, data := range bad {
		if _, err := ParseBeat(data); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, err := AppendBeat(nil, Beat{Node: strings.Repeat("n", MaxNodeName+1)}); err == nil {
		t.Error("a node name longer than a DNS subdomain was encoded")
	}
	if _, err := AppendBeat(nil, Beat{}); err == nil {
		t.Error("an empty node name was encoded")
	}
}
