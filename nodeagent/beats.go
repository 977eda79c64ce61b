package nodeagent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"k8s.io/klog/v2"

	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// beater sends a beat to the controller's leader every interval, over UDP, and extends
// the node's grant when an answer vouches for the generation of the grants this agent
// holds. The extension counts from when the answered beat was sent, as a Lease renewal's
// does from when the request was sent: the leader saw the beat later, so its view of the
// node outlives the agent's grant.
type beater struct {
	node     string
	interval time.Duration
	lease    time.Duration
	now      func() time.Duration
	beat     *heartbeat
	leader   func() (netip.AddrPort, bool)
	// generation is the generation of the grants the agent's cache holds.
	generation func() int64
	// extended is called after every extension, with whether the grant had lapsed.
	extended func(lapsed bool)
	// behind is called when an answer vouches for grants newer than the agent's cache
	// holds; unanswered when answers stop (the leader may have changed). Neither blocks.
	behind, unanswered func()
	m                  *metrics

	conn *net.UDPConn

	mu   sync.Mutex
	seq  uint64
	sent [64]sentBeat // by seq modulo its size
	term uint64       // the highest leader term accepted
}

type sentBeat struct {
	seq uint64
	at  time.Duration
}

func (b *beater) run(ctx context.Context) error {
	conn, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return err
	}
	b.conn = conn
	go func() {
		<-ctx.Done()
		_ = conn.Close()
	}()
	go b.receive(ctx)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	var buf []byte
	for {
		if v := b.beat.lastVouched(); b.now()-v > 3*b.interval {
			b.unanswered()
		}
		if to, ok := b.leader(); ok {
			b.mu.Lock()
			b.seq++
			beat := hb.Beat{Node: b.node, Seq: b.seq, Term: b.term, Generation: b.generation(),
				LeaseMillis: uint32(b.lease / time.Millisecond)}
			b.sent[b.seq%uint64(len(b.sent))] = sentBeat{seq: b.seq, at: b.now()}
			b.mu.Unlock()
			if buf, err = hb.AppendBeat(buf[:0], beat); err != nil {
				return err
			}
			if _, err := conn.WriteToUDPAddrPort(buf, to); err != nil {
				klog.V(2).InfoS("Sending a heartbeat failed", "to", to, "err", err)
			}
			b.m.beats.WithLabelValues("sent").Inc()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (b *beater) receive(ctx context.Context) {
	buf := make([]byte, 512)
	for {
		n, _, err := b.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ans, err := hb.ParseAnswer(buf[:n])
		if err != nil || ans.Node != b.node {
			b.m.beats.WithLabelValues("malformed").Inc()
			continue
		}
		b.handle(ans)
	}
}

// handle takes one answer.
func (b *beater) handle(ans hb.Answer) {
	b.mu.Lock()
	if ans.Term < b.term {
		b.mu.Unlock()
		b.m.beats.WithLabelValues("stale-term").Inc()
		return // an earlier leader: its word no longer counts
	}
	b.term = ans.Term
	s := b.sent[ans.Seq%uint64(len(b.sent))]
	b.mu.Unlock()
	if s.seq != ans.Seq || s.at == 0 {
		b.m.beats.WithLabelValues("unknown-seq").Inc()
		return // too old to know when it was sent
	}
	if ans.Vouched > b.generation() {
		b.behind()
	}
	if ans.Vouched == 0 || ans.Vouched != b.generation() {
		b.m.beats.WithLabelValues("not-vouched").Inc()
		return
	}
	b.m.beats.WithLabelValues("vouched").Inc()
	b.extended(b.beat.vouch(s.at))
}
