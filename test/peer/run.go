package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Serve runs the TCP and UDP servers on every address of the host, at port, until ctx
// ends. In a pod of one address, a UDP answer leaves from the address asked.
func Serve(ctx context.Context, port int) error {
	addr := fmt.Sprintf(":%d", port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		ln.Close()
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { ServeTCP(ln, func() bool { return ctx.Err() != nil }) })
	wg.Go(func() { ServeUDP(pc) })
	<-ctx.Done()
	ln.Close()
	pc.Close()
	wg.Wait()
	return nil
}

// Who asks the server at addr, over "tcp" or "udp", which source it saw.
func Who(ctx context.Context, network string, addr string) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	if network == "udp" {
		return WhoUDP(ctx, c)
	}
	return WhoTCP(ctx, c)
}

// Stream sends the server at addr a UDP datagram "<tag>-<seq>" every interval, over one
// socket (one conntrack entry), until ctx ends; it reads and drops the answers. A send
// that fails (no route while a link is down, say) is counted as sent and not retried: the
// receiver sees the gap.
func Stream(ctx context.Context, addr, tag string, interval time.Duration) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				return
			}
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for seq := 0; ; seq++ {
		_, _ = fmt.Fprintf(c, "%s-%d", tag, seq)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// EchoResult is what Echo saw of its connection.
type EchoResult struct {
	Source  netip.AddrPort // the source the server saw when the connection opened
	Lines   int            // the lines echoed, each checked
	Longest time.Duration  // the longest wait for an echo
}

// Echo keeps one TCP connection to the server at addr until ctx ends: it sends a numbered
// line every interval and checks that every echo is exactly the line sent. A reset, a wrong
// byte, or 30 s without an echo ends it with an error. It is what a long-lived connection
// through a gateway looks like.
func Echo(ctx context.Context, addr string, interval time.Duration) (EchoResult, error) {
	var res EchoResult
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return res, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	r := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "ECHO\n"); err != nil {
		return res, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return res, fmt.Errorf("the server's first line: %w", err)
	}
	if res.Source, err = netip.ParseAddrPort(strings.TrimSpace(line)); err != nil {
		return res, err
	}
	_ = c.SetDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() { // the sender; the connection's close ends it
		t := time.NewTicker(interval)
		defer t.Stop()
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(c, "line %d %s\n", i, strings.Repeat("x", i%40)); err != nil {
				errc <- fmt.Errorf("sending line %d: %w", i, err)
				return
			}
			select {
			case <-ctx.Done():
				errc <- nil
				return
			case <-t.C:
			}
		}
	}()
	last := time.Now()
	for i := 0; ; i++ {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := r.ReadString('\n')
		if ctx.Err() != nil {
			return res, nil
		}
		if err != nil {
			return res, fmt.Errorf("after %d lines: %w", i, err)
		}
		if want := fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", i%40)); got != want {
			return res, fmt.Errorf("echo %d is %q, want %q", i, got, want)
		}
		now := time.Now()
		res.Lines, res.Longest, last = i+1, max(res.Longest, now.Sub(last)), now
		select {
		case err := <-errc:
			if err != nil {
				return res, err
			}
		default:
		}
	}
}
