package peer

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// WhoTCP asks over c, a TCP connection to a server, which source the server saw. It
// gives up at ctx's deadline.
func WhoTCP(ctx context.Context, c net.Conn) (netip.AddrPort, error) {
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(deadline)
	}
	if _, err := fmt.Fprintf(c, "WHO\n"); err != nil {
		return netip.AddrPort{}, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading the answer of %s: %w", c.RemoteAddr(), err)
	}
	return netip.ParseAddrPort(strings.TrimSpace(line))
}

// WhoUDP asks over c, a UDP socket connected to a server, which source the server saw. A
// datagram can be lost: it asks up to five times, half a second apart, within ctx.
func WhoUDP(ctx context.Context, c net.Conn) (netip.AddrPort, error) {
	buf := make([]byte, 512)
	for attempt := 0; attempt < 5; attempt++ {
		if _, err := c.Write([]byte("who")); err != nil {
			return netip.AddrPort{}, err
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			src, _, _ := strings.Cut(string(buf[:n]), " ")
			return netip.ParseAddrPort(src)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no UDP answer from %s", c.RemoteAddr())
}
