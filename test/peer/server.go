package peer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Port is where the servers listen.
const Port = 8080

// ServeTCP answers every connection ln accepts, until ln is closed, and waits for the
// connections it answers. closed tells a long ECHO to stop.
func ServeTCP(ln net.Listener, closed func() bool) {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
			handleTCP(c, closed)
		}()
	}
}

func handleTCP(c net.Conn, closed func() bool) {
	src := c.RemoteAddr().String()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	mode, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch mode {
	case "WHO":
		fmt.Fprintf(c, "%s\n", src)
	case "ECHO":
		fmt.Fprintf(c, "%s\n", src)
		for !closed() {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, l); err != nil {
				return
			}
		}
	case "SINK":
		n, _ := io.Copy(io.Discard, r)
		fmt.Fprintf(c, "%s %d\n", src, n)
	case "SOURCE":
		n, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || n < 0 || n > 1<<32 {
			fmt.Fprintf(c, "bad size %q\n", arg)
			return
		}
		_, _ = io.CopyN(c, zeros{}, n)
	default:
		fmt.Fprintf(c, "unknown mode %q\n", mode)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// ServeUDP answers every datagram pc receives with its source and the start of its
// payload, until pc is closed. An answer leaves from pc's address: bind one socket per
// address of a host with several, so that the client hears back from the address it asked.
func ServeUDP(pc net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		reply := append([]byte(from.String()+" "), buf[:min(n, 64)]...)
		_, _ = pc.WriteTo(reply, from)
	}
}
