package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"k8s.io/klog/v2"
)

// Handler decides the answer to a beat; false sends none.
type Handler func(Beat) (Answer, bool)

// Server answers beats on one UDP socket.
type Server struct {
	conn    *net.UDPConn
	handle  Handler
	dropped func(reason string) // counts datagrams not answered; may be nil
}

// Listen opens the socket. addr is host:port; port 0 picks one.
func Listen(addr string, handle Handler, dropped func(reason string)) (*Server, error) {
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
	return &Server{conn: conn, handle: handle, dropped: dropped}, nil
}

// Addr is the address the socket is bound to.
func (s *Server) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Serve answers beats until ctx ends, then closes the socket.
func (s *Server) Serve(ctx context.Context) {
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
		beat, err := ParseBeat(buf[:n])
		if err != nil {
			s.dropped("malformed")
			klog.V(4).InfoS("Ignoring a datagram", "from", from, "err", err)
			continue
		}
		answer, ok := s.handle(beat)
		if !ok {
			s.dropped("unanswered")
			continue
		}
		if out, err = AppendAnswer(out[:0], answer); err != nil {
			klog.ErrorS(err, "Encoding a heartbeat answer", "node", beat.Node)
			continue
		}
		if _, err := s.conn.WriteToUDPAddrPort(out, from); err != nil {
			klog.V(2).InfoS("Answering a heartbeat failed", "node", beat.Node, "to", from, "err", err)
		}
	}
}
