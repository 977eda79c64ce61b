package peer

import (
	"context"
	"fmt"
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

// TestStreamNumbersItsDatagrams: Stream sends "<tag>-<seq>" from 0 up, one socket, at
// its interval, until its context ends.
func TestStreamNumbersItsDatagrams(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Stream(ctx, pc.LocalAddr().String(), "t", 10*time.Millisecond) }()
	buf := make([]byte, 64)
	sources := map[string]bool{}
	for seq := 0; seq < 10; seq++ {
		_ = pc.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", seq, err)
		}
		if got, want := string(buf[:n]), fmt.Sprintf("t-%d", seq); got != want {
			t.Fatalf("datagram %d is %q, want %q", seq, got, want)
		}
		sources[from.String()] = true
	}
	if len(sources) != 1 {
		t.Errorf("the datagrams came from %d sockets, want one: %v", len(sources), sources)
	}
	if err := <-done; err != nil {
		t.Errorf("Stream: %v", err)
	}
}

// TestTransfer: Transfer moves size bytes up and size bytes down, and reports the source
// the server saw for the upload.
func TestTransfer(t *testing.T) {
	ln := serveTCP(t)
	const size = 3<<20 + 17
	seen, up, down, err := Transfer(context.Background(), ln.Addr().String(), size)
	if err != nil {
		t.Fatal(err)
	}
	if seen.Addr() != netip.MustParseAddr("127.0.0.1") || up != size || down != size {
		t.Errorf("Transfer = %s, %d up, %d down; want 127.0.0.1, %d each way", seen, up, down, size)
	}
}

// TestEcho: a long-lived connection's lines all come back; a connection the server resets
// ends Echo with an error.
func TestEcho(t *testing.T) {
	ln := serveTCP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := Echo(ctx, ln.Addr().String(), 5*time.Millisecond)
	if err != nil || res.Lines < 20 || res.Source.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("Echo = %+v, %v; want at least 20 lines from 127.0.0.1", res, err)
	}

	// A server that answers the first line, then resets the connection.
	rst, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rst.Close()
	go func() {
		c, err := rst.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s\n", c.RemoteAddr())
		time.Sleep(50 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := Echo(ctx2, rst.Addr().String(), 5*time.Millisecond); err == nil {
		t.Errorf("Echo over a reset connection returned no error")
	}
}

// serveTCP runs the TCP server on a loopback port until the test ends.
func serveTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { ServeTCP(ln, func() bool { return false }); close(done) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln
}
