package routing

import (
	"net/netip"
	"testing"
)

func TestVirtualMAC(t *testing.T) {
	for ip, want := range map[string]string{
		"198.51.100.100": "02:65:c6:33:64:64",
		"10.0.0.1":       "02:65:0a:00:00:01",
		"0.0.0.0":        "02:65:00:00:00:00", // the steering next hop's: nobody holds it
	} {
		if got := VirtualMAC(netip.MustParseAddr(ip)).String(); got != want {
			t.Errorf("VirtualMAC(%s) = %s, want %s", ip, got, want)
		}
	}
}
