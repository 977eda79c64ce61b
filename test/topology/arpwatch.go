package topology

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"golang.org/x/sys/unix"
)

// ARPWatch asks the L2 segment who has an IP, every interval, from the router, and
// records every ARP packet that claims the IP (replies, requests and gratuitous
// announcements whose sender is the IP) as it enters the bridge, with the node whose
// port it came in by. Every holder claims a floating IP with the same virtual MAC, so
// the port, not the MAC, tells the claimants apart: two nodes answering one question is
// a split-brain.
type ARPWatch struct {
	ip     netip.Addr
	client *arp.Client
	ports  []portTap
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu     sync.Mutex
	asked  []time.Time // when each question went out
	claims []ARPClaim
}

// ARPClaim is one ARP packet whose sender was the watched IP.
type ARPClaim struct {
	At   time.Time
	Node string // whose bridge port it came in by
	MAC  string // the sender hardware address it claimed the IP with
}

// portTap reads the frames a node sends into the bridge.
type portTap struct {
	node string
	fd   int
}

// StartARPWatch watches ip on t's segment, asking from the router every interval, for
// at most limit.
func StartARPWatch(t *Topology, ip netip.Addr, interval, limit time.Duration) (*ARPWatch, error) {
	w := &ARPWatch{ip: ip, stop: make(chan struct{})}
	if err := Do(t.Router, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		w.client, err = arp.Dial(ifi)
		return err
	}); err != nil {
		return nil, fmt.Errorf("opening an ARP socket on the router: %w", err)
	}
	for _, n := range t.Nodes {
		fd, err := tapPort(t.L2, n.BridgePort)
		if err != nil {
			w.close()
			return nil, err
		}
		w.ports = append(w.ports, portTap{node: n.Name, fd: fd})
	}
	w.wg.Add(1 + len(w.ports))
	go w.ask(interval, limit)
	for _, p := range w.ports {
		go w.listen(p)
	}
	return w, nil
}

// tapPort opens a packet socket that receives every frame arriving on port from its
// node, and none the bridge sends out of it.
func tapPort(ns, port string) (int, error) {
	fd := -1
	err := Do(ns, func() error {
		ifi, err := net.InterfaceByName(port)
		if err != nil {
			return err
		}
		all := int(htons(unix.ETH_P_ALL))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, all); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
			return err
		}
		// A read returns at least every 200 ms, so that Stop is seen.
		tv := unix.Timeval{Usec: 200_000}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		return -1, fmt.Errorf("tapping bridge port %s: %w", port, err)
	}
	return fd, nil
}

func (w *ARPWatch) ask(interval, limit time.Duration) {
	defer w.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	deadline := time.After(limit)
	for {
		w.mu.Lock()
		w.asked = append(w.asked, time.Now())
		w.mu.Unlock()
		_ = w.client.Request(w.ip)
		select {
		case <-w.stop:
			return
		case <-deadline:
			return
		case <-t.C:
		}
	}
}

func (w *ARPWatch) listen(p portTap) {
	defer w.wg.Done()
	buf := make([]byte, 2048)
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(p.fd, buf, 0)
		if err != nil || n < 14 || buf[12] != 0x08 || buf[13] != 0x06 {
			continue // a timeout, or not ARP
		}
		var pkt arp.Packet
		if pkt.UnmarshalBinary(buf[14:n]) != nil || pkt.SenderIP != w.ip {
			continue
		}
		w.mu.Lock()
		w.claims = append(w.claims, ARPClaim{At: time.Now(), Node: p.node, MAC: pkt.SenderHardwareAddr.String()})
		w.mu.Unlock()
	}
}

// Stop ends the watch. Calling it again does nothing.
func (w *ARPWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		w.wg.Wait()
		w.close()
	})
}

func (w *ARPWatch) close() {
	_ = w.client.Close()
	for _, p := range w.ports {
		_ = unix.Close(p.fd)
	}
}

// Claims returns what the watch recorded.
func (w *ARPWatch) Claims() []ARPClaim {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ARPClaim(nil), w.claims...)
}

// SplitBrain returns every instant at which two nodes claimed the IP: two claims from
// different nodes between one question and the next, or a node claiming the IP again
// after another one took over (the old holder still answering).
func (w *ARPWatch) SplitBrain() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	window := func(at time.Time) int { // index of the question the claim answers
		i := 0
		for i+1 < len(w.asked) && !w.asked[i+1].After(at) {
			i++
		}
		return i
	}
	byWindow := map[int]string{}
	var order []string // claimant nodes in order of first claim
	for _, c := range w.claims {
		i := window(c.At)
		if node, ok := byWindow[i]; ok && node != c.Node {
			out = append(out, fmt.Sprintf("%s: %s and %s both claim %s", c.At.Format("15:04:05.000"), node, c.Node, w.ip))
		}
		byWindow[i] = c.Node
		switch {
		case len(order) == 0 || order[len(order)-1] != c.Node:
			for _, earlier := range order {
				if earlier == c.Node {
					out = append(out, fmt.Sprintf("%s: %s claims %s again after %s took it over", c.At.Format("15:04:05.000"), c.Node, w.ip, order[len(order)-1]))
				}
			}
			order = append(order, c.Node)
		}
	}
	return out
}
