package topology

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// TCPProxy listens at an address inside a network namespace and copies bytes to a target
// outside it: the nodes reach kube-apiserver, which listens on the host's loopback, so.
// TLS passes through untouched. A node cut off from the listening address (a partition)
// is cut off from the target, as in a real cluster.
type TCPProxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
}

// StartTCPProxy listens at addr in namespace ns and proxies every connection to target.
func StartTCPProxy(ns, addr, target string) (*TCPProxy, error) {
	ln, err := Listen(ns, "tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the proxy to %s on %s in %s: %w", target, addr, ns, err)
	}
	p := &TCPProxy{ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.pipe(c, target) })
		}
	})
	return p, nil
}

func (p *TCPProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *TCPProxy) pipe(c net.Conn, target string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	p.track(c, true)
	p.track(u, true)
	defer p.track(c, false)
	defer p.track(u, false)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}

// DropConnections closes every proxied connection, as a restart of the target does.
func (p *TCPProxy) DropConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Close stops accepting, drops the open connections and waits for the copies to end.
func (p *TCPProxy) Close() {
	p.ln.Close()
	p.DropConnections()
	p.wg.Wait()
}
