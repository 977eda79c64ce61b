package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/heartbeat"
)

// beatHandler decides the answer to a beat; false sends none.
type beatHandler func(heartbeat.Beat) (heartbeat.Answer, bool)

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
		beat, err := heartbeat.ParseBeat(buf[:n])
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
		if out, err = heartbeat.AppendAnswer(out[:0], answer); err != nil {
			klog.ErrorS(err, "Encoding a heartbeat answer", "node", beat.Node)
			continue
		}
		if _, err := s.conn.WriteToUDPAddrPort(out, from); err != nil {
			klog.V(2).InfoS("Answering a heartbeat failed", "node", beat.Node, "to", from, "err", err)
		}
	}
}
