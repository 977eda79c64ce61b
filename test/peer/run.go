package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
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
