package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"k8s.io/klog/v2"
)

// beatHandler authenticates a beat's datagram and decides its answer: the answer's
// datagram appended to buf, or the reason none goes back.
type beatHandler func(buf, data []byte) ([]byte, string)

// beatServer answers beats on one UDP socket.
type beatServer struct {
	conn    *net.UDPConn
	handle  beatHandler
	dropped func(reason string) // counts datagrams not answered; may be nil
}

// listenBeats opens the socket. addr is host:port; port 0 picks one.
func listenBeats(addr string, handle beatHandler, dropped func(reason string)) (*beatServer, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("heartbeat address %q: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("listening for heartbeats on %s: %w", addr, err)
	}
	if dropped == nil {
		dropped = func(string) {}
	}
	return &beatServer{conn: conn, handle: handle, dropped: dropped}, nil
}

// Addr is the address the socket is bound to.
func (s *beatServer) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Serve answers beats until ctx ends, then closes the socket.
func (s *beatServer) Serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		_ = s.conn.Close()
	}()
	buf := make([]byte, 512)
	var out []byte
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			klog.ErrorS(err, "Reading a heartbeat")
			continue
		}
		answer, reason := s.handle(out[:0], buf[:n])
		if reason != "" {
			s.dropped(reason)
			klog.V(4).InfoS("Not answering a datagram", "from", from, "reason", reason)
			continue
		}
		out = answer
		if _, err := s.conn.WriteToUDPAddrPort(out, from); err != nil {
			klog.V(2).InfoS("Answering a heartbeat failed", "to", from, "err", err)
		}
	}
}
