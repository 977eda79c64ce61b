package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Transfer sends size bytes to the server at addr over TCP ("SINK"), and has it send size
// bytes back ("SOURCE"). It returns the source the server saw for the upload, and the
// bytes each way.
func Transfer(ctx context.Context, addr string, size int64) (seen netip.AddrPort, up, down int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return seen, 0, 0, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	fmt.Fprintf(c, "SINK\n")
	if _, err := io.CopyN(c, zeros{}, size); err != nil {
		c.Close()
		return seen, 0, 0, fmt.Errorf("uploading: %w", err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	f := strings.Fields(line)
	if err != nil || len(f) != 2 {
		return seen, 0, 0, fmt.Errorf("the server's answer to the upload %q: %v", line, err)
	}
	if seen, err = netip.ParseAddrPort(f[0]); err != nil {
		return seen, 0, 0, err
	}
	if _, err := fmt.Sscan(f[1], &up); err != nil {
		return seen, 0, 0, err
	}
	c, err = d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return seen, up, 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	fmt.Fprintf(c, "SOURCE %d\n", size)
	down, err = io.Copy(io.Discard, c)
	return seen, up, down, err
}

// Ping sends count ICMP echo requests of size bytes of data to dst, one every 200 ms,
// from an unprivileged ICMP socket (the pod's net.ipv4.ping_group_range must admit its
// group), with DF if df, and says what came back: "reply from A seq N" for each echo
// reply, and "pmtu N" once the kernel refuses the size for the path MTU it learnt (from a
// frag-needed on the way).
func Ping(ctx context.Context, dst netip.Addr, size, count int, df bool) ([]string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
	if err != nil {
		return nil, fmt.Errorf("opening an ICMP socket (does net.ipv4.ping_group_range admit this group?): %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
		return nil, err
	}
	if df {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
			return nil, err
		}
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1}); err != nil {
		return nil, err
	}
	var out []string
	pmtu := func() string {
		mtu, _ := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU)
		return fmt.Sprintf("pmtu %d", mtu)
	}
	buf := make([]byte, 65536)
	for seq := 1; seq <= count && ctx.Err() == nil; seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{Seq: seq, Data: make([]byte, size)}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return out, err
		}
		if _, err := unix.Write(fd, b); errors.Is(err, unix.EMSGSIZE) {
			out = append(out, pmtu())
		} else if err != nil {
			return out, err
		} else if n, err := unix.Read(fd, buf); errors.Is(err, unix.EMSGSIZE) {
			out = append(out, pmtu())
		} else if err != nil {
			out = append(out, fmt.Sprintf("seq %d: no reply: %v", seq, err))
		} else if m, err := icmp.ParseMessage(1, buf[:n]); err == nil && m.Type == ipv4.ICMPTypeEchoReply {
			out = append(out, fmt.Sprintf("reply from %s seq %d", dst, seq))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return out, nil
}
