package peer

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// A client hears back the very address it sent from, over TCP and over UDP: that is
// what the demo prints as "seen at the external host as".
func TestWhoAnswersTheSource(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { ServeTCP(ln, func() bool { return false }); done <- struct{}{} }()
	go func() { ServeUDP(pc); done <- struct{}{} }()
	t.Cleanup(func() { ln.Close(); pc.Close(); <-done; <-done })

	tests := []struct {
		name    string
		network string
		addr    string
		who     func(context.Context, net.Conn) (netip.AddrPort, error)
	}{
		{name: "TCP", network: "tcp4", addr: ln.Addr().String(), who: WhoTCP},
		{name: "UDP", network: "udp4", addr: pc.LocalAddr().String(), who: WhoUDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			c, err := net.Dial(tt.network, tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := tt.who(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if want := netip.MustParseAddrPort(c.LocalAddr().String()); got != want {
				t.Errorf("the server saw %s, want %s", got, want)
			}
		})
	}
}
