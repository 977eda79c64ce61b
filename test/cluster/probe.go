package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/egressgw/egressgw/test/topology"
)

// Probe is a stream of numbered UDP datagrams from a pod to the external host, one every
// interval, each answered with the source the host saw. It measures how long answers
// stop during a fault, and which sources the host saw.
type Probe struct {
	Tag      string
	interval time.Duration
	conn     net.Conn
	cancel   context.CancelFunc
	done     chan struct{}

	mu      sync.Mutex
	sent    int
	answers []Answer
}

// Answer is one answered datagram.
type Answer struct {
	Seq    int
	At     time.Time
	Source netip.Addr
}

// StartProbe starts a probe from pod to the external host's address dst. Its datagrams
// carry "<tag>-<seq>" so the external sniffer can tell them apart. It stops by itself
// after limit.
func StartProbe(pod *topology.Pod, dst netip.Addr, tag string, interval, limit time.Duration) (*Probe, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	conn, err := topology.Dial(ctx, pod.NS, "udp4", netip.AddrPortFrom(dst, topology.ServicePort).String())
	if err != nil {
		cancel()
		return nil, err
	}
	p := &Probe{Tag: tag, interval: interval, conn: conn, cancel: cancel, done: make(chan struct{})}
	go p.receive()
	go p.send(ctx)
	return p, nil
}

func (p *Probe) send(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for seq := 0; ; seq++ {
		_, _ = fmt.Fprintf(p.conn, "%s-%d", p.Tag, seq)
		p.mu.Lock()
		p.sent++
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Probe) receive() {
	buf := make([]byte, 512)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		src, payload, _ := strings.Cut(string(buf[:n]), " ")
		ap, err := netip.ParseAddrPort(src)
		if err != nil {
			continue
		}
		seq, err := strconv.Atoi(strings.TrimPrefix(payload, p.Tag+"-"))
		if err != nil {
			continue
		}
		p.mu.Lock()
		p.answers = append(p.answers, Answer{Seq: seq, At: time.Now(), Source: ap.Addr()})
		p.mu.Unlock()
	}
}

// Stop ends the probe and closes its socket.
func (p *Probe) Stop() {
	p.cancel()
	<-p.done
	time.Sleep(100 * time.Millisecond) // the last answers
	p.conn.Close()
}

// Answers returns the answers so far.
func (p *Probe) Answers() []Answer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Answer(nil), p.answers...)
}

// Sent is how many datagrams the probe sent.
func (p *Probe) Sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// WaitAnswer waits until an answer from source arrives after since.
func (p *Probe) WaitAnswer(source netip.Addr, since time.Time, timeout time.Duration) (Answer, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, a := range p.Answers() {
			if a.At.After(since) && a.Source == source {
				return a, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return Answer{}, fmt.Errorf("no answer seen from %s within %s of %s", source, timeout, since.Format("15:04:05.000"))
}

// WaitAnswerFrom waits until an answer from source arrives for a datagram numbered seq
// or later: answers to datagrams sent before a fault don't count.
func (p *Probe) WaitAnswerFrom(source netip.Addr, seq int, timeout time.Duration) (Answer, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, a := range p.Answers() {
			if a.Seq >= seq && a.Source == source {
				return a, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return Answer{}, fmt.Errorf("no answer from %s to datagram %d or later within %s", source, seq, timeout)
}

// Lost counts the datagrams numbered from..to-1 that got no answer from source.
func (p *Probe) Lost(source netip.Addr, from, to int) int {
	answered := map[int]bool{}
	for _, a := range p.Answers() {
		if a.Source == source {
			answered[a.Seq] = true
		}
	}
	lost := 0
	for seq := from; seq < to; seq++ {
		if !answered[seq] {
			lost++
		}
	}
	return lost
}

// Gap is the longest time without an answer from source between from and to, counting
// answers from any other source as no answer.
func (p *Probe) Gap(source netip.Addr, from, to time.Time) time.Duration {
	last, gap := from, time.Duration(0)
	for _, a := range p.Answers() {
		if a.At.Before(from) || a.At.After(to) || a.Source != source {
			continue
		}
		gap = max(gap, a.At.Sub(last))
		last = a.At
	}
	return max(gap, to.Sub(last))
}
