package heartbeat

import (
	"bytes"
	"testing"
)

func TestPairSession(t *testing.T) {
	a, _ := NewKeyPair()
	b, _ := NewKeyPair()
	c, _ := NewKeyPair()
	ab, err := NewPairSession(a, b.Public, "node-a", "node-b")
	if err != nil {
		t.Fatal(err)
	}
	ba, err := NewPairSession(b, a.Public, "node-b", "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if ab.ID != ba.ID {
		t.Fatalf("the two ends name the session differently: %x and %x", ab.ID, ba.ID)
	}
	msg, ad := []byte("entries"), []byte("header")
	sealed := ab.Seal(nil, 7, msg, ad)
	if bytes.Contains(sealed, msg) {
		t.Errorf("the plaintext shows in the sealed datagram")
	}
	got, err := ba.Open(nil, 7, sealed, ad)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open = %q, %v; want %q", got, err, msg)
	}
	cb, _ := NewPairSession(c, b.Public, "node-a", "node-b") // another key claiming node-a
	tests := []struct {
		name string
		open func() error
	}{
		{"another counter", func() error { _, err := ba.Open(nil, 8, sealed, ad); return err }},
		{"another header", func() error { _, err := ba.Open(nil, 7, sealed, []byte("HEADER")); return err }},
		{"its own direction", func() error { _, err := ab.Open(nil, 7, sealed, ad); return err }},
		{"a forged key", func() error { _, err := ba.Open(nil, 7, cb.Seal(nil, 7, msg, ad), ad); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.open(); err != ErrBadMAC {
				t.Errorf("Open = %v, want ErrBadMAC", err)
			}
		})
	}
	if _, err := NewPairSession(a, b.Public, "node-a", "node-a"); err == nil {
		t.Errorf("a session of a node with itself was made")
	}
}
