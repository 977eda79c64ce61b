package peer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
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
