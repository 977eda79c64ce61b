package topology

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/arp"
)

// ARPWatch asks the L2 segment who has an IP, every interval, from a host on it, and
// records every ARP packet that claims the IP (replies, requests and gratuitous
// announcements whose sender is the IP). Two MACs answering one question is a
// split-brain: two nodes hold the IP at once.
type ARPWatch struct {
	ip     netip.Addr
	client *arp.Client
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu     sync.Mutex
	asked  []time.Time // when each question went out
	claims []ARPClaim
}

// ARPClaim is one ARP packet whose sender was the watched IP.
type ARPClaim struct {
	At  time.Time
	MAC string
}

// StartARPWatch watches ip from interface ifname of network namespace ns, asking every
// interval, for at most limit.
func StartARPWatch(ns, ifname string, ip netip.Addr, interval, limit time.Duration) (*ARPWatch, error) {
	w := &ARPWatch{ip: ip, stop: make(chan struct{})}
	if err := Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		w.client, err = arp.Dial(ifi)
		return err
	}); err != nil {
		return nil, fmt.Errorf("opening an ARP socket in %s: %w", ns, err)
	}
	w.wg.Add(2)
	go w.ask(interval, limit)
	go w.listen()
	return w, nil
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

func (w *ARPWatch) listen() {
	defer w.wg.Done()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		_ = w.client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		p, _, err := w.client.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			select {
			case <-w.stop:
				return
			default:
				continue // a malformed frame
			}
		}
		if p.SenderIP == w.ip {
			w.mu.Lock()
			w.claims = append(w.claims, ARPClaim{At: time.Now(), MAC: p.SenderHardwareAddr.String()})
			w.mu.Unlock()
		}
	}
}

// Stop ends the watch. Calling it again does nothing.
func (w *ARPWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		_ = w.client.Close()
		w.wg.Wait()
	})
}

// Claims returns what the watch recorded.
func (w *ARPWatch) Claims() []ARPClaim {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ARPClaim(nil), w.claims...)
}

// SplitBrain returns every instant at which two MACs claimed the IP: two claims from
// different MACs between one question and the next, or a MAC claiming the IP again after
// another one took over (the old holder still answering).
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
	var order []string // claimant MACs in order of first claim
	for _, c := range w.claims {
		i := window(c.At)
		if mac, ok := byWindow[i]; ok && mac != c.MAC {
			out = append(out, fmt.Sprintf("%s: %s and %s both claim %s", c.At.Format("15:04:05.000"), mac, c.MAC, w.ip))
		}
		byWindow[i] = c.MAC
		switch {
		case len(order) == 0 || order[len(order)-1] != c.MAC:
			for _, earlier := range order {
				if earlier == c.MAC {
					out = append(out, fmt.Sprintf("%s: %s claims %s again after %s took it over", c.At.Format("15:04:05.000"), c.MAC, w.ip, order[len(order)-1]))
				}
			}
			order = append(order, c.MAC)
		}
	}
	return out
}
