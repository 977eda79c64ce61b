package topology

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/egressgw/egressgw/test/peer"
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
	return peer.WhoTCP(ctx, c)
}

func whoUDP(ctx context.Context, ns string, dst netip.AddrPort) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := Dial(ctx, ns, "udp4", dst.String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	return peer.WhoUDP(ctx, c)
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
