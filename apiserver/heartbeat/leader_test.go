package heartbeat

import (
	"net/netip"
	"testing"
)

func TestLeaderIdentity(t *testing.T) {
	k, err := NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort("198.51.100.5:7471")
	id := LeaderIdentity("controller-7d9f_0a1b", addr, k.Public)
	got, err := ParseLeaderIdentity(id)
	if err != nil || got.Addr != addr || got.Key != k.Public {
		t.Fatalf("ParseLeaderIdentity(%q) = %+v, %v", id, got, err)
	}
	for _, bad := range []string{
		"controller-7d9f_0a1b",                         // no address: heartbeats are off
		"controller@198.51.100.5:7471",                 // no key
		"controller@198.51.100.5#" + k.Public.String(), // no port
		"controller@198.51.100.5:7471#c2hvcnQ=",        // a key of the wrong size
	} {
		if l, err := ParseLeaderIdentity(bad); err == nil {
			t.Errorf("ParseLeaderIdentity(%q) = %+v, want an error", bad, l)
		}
	}
}
