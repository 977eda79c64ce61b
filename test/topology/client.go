package topology

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// WhoTCP connects from the pod to the external host's address dst and returns the
// source address the host saw.
func (p *Pod) WhoTCP(ctx context.Context, dst netip.Addr) (netip.AddrPort, error) {
	return whoTCP(ctx, p.NS, netip.AddrPortFrom(dst, ServicePort))
}

// WhoUDP sends one datagram from the pod to the external host's address dst and returns
// the source address the host saw.
func (p *Pod) WhoUDP(ctx context.Context, dst netip.Addr) (netip.AddrPort, error) {
	return whoUDP(ctx, p.NS, netip.AddrPortFrom(dst, ServicePort))
}

func whoTCP(ctx context.Context, ns string, dst netip.AddrPort) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := Dial(ctx, ns, "tcp4", dst.String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	if _, err := fmt.Fprintf(c, "WHO\n"); err != nil {
		return netip.AddrPort{}, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading the answer of %s: %w", dst, err)
	}
	return netip.ParseAddrPort(strings.TrimSpace(line))
}

func whoUDP(ctx context.Context, ns string, dst netip.AddrPort) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := Dial(ctx, ns, "udp4", dst.String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	// A datagram can be lost: try a few times within the deadline.
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
	return netip.AddrPort{}, fmt.Errorf("no UDP answer from %s", dst)
}

// Ping sends one ICMP echo from the pod and waits a second for the reply.
func (p *Pod) Ping(dst netip.Addr) error {
	_, err := p.Exec("ping", "-n", "-q", "-c", "1", "-W", "1", dst.String())
	return err
}

// DialTCP connects from the pod to addr.
func (p *Pod) DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return Dial(ctx, p.NS, "tcp4", addr.String())
}

// DialUDP opens a UDP socket in the pod connected to addr.
func (p *Pod) DialUDP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return Dial(ctx, p.NS, "udp4", addr.String())
}
