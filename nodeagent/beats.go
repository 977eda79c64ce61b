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
//
// Beats and answers are authenticated (package heartbeat) with the agent's keys and the
// leader's, which its leader election Lease names. The socket is connected to the leader's
// address, so the kernel hands it datagrams from there only; and an answer counts only if
// its MAC verifies, it carries this start's nonce, and it answers a beat this agent sent,
// in that order, before anything changes (the term included).
type beater struct {
	node     string
	interval time.Duration
	lease    time.Duration
	now      func() time.Duration
	beat     *heartbeat
	keys     *beatKeys
	leader   func() (hb.Leader, bool)
	// generation is the generation of the grants the agent's cache holds.
	generation func() int64
	// extended is called after every extension, with whether the grant had lapsed.
	extended func(lapsed bool)
	// behind is called when an answer vouches for grants newer than the agent's cache
	// holds; unanswered when answers stop (the leader may have changed); republish when
	// the keys to publish change. None blocks.
	behind, unanswered, republish func()
	m                             *metrics

	mu   sync.Mutex
	seq  uint64
	sent [64]sentBeat // by seq modulo its size
	term uint64       // the highest leader term accepted
	// local is the socket's own address, for the tests that attack it.
	local netip.AddrPort
}

type sentBeat struct {
	seq uint64
	at  time.Duration
}

// link is the agent's connection to one leader: a socket connected to its address, and
// the sessions of the agent's keys with its key.
type link struct {
	to   hb.Leader
	conn *net.UDPConn

	mu       sync.Mutex
	sessions map[*hb.KeyPair]*hb.Session
	byID     map[hb.SessionID]*hb.KeyPair
}

func (b *beater) run(ctx context.Context) error {
	var cur *link
	defer func() {
		if cur != nil {
			_ = cur.conn.Close()
		}
	}()
	t := time.NewTicker(b.interval)
	defer t.Stop()
	var buf []byte
	for {
		if rotated, err := b.keys.rotate(time.Now()); err != nil {
			klog.ErrorS(err, "Making a new heartbeat key; keeping the current one", "node", b.node)
		} else if rotated {
			klog.InfoS("Rotating the heartbeat key", "node", b.node)
			b.republish()
		}
		if v := b.beat.lastVouched(); b.now()-v > 3*b.interval {
			b.unanswered()
		}
		if to, ok := b.leader(); ok {
			if cur == nil || cur.to != to {
				next, err := b.dial(ctx, to)
				if err != nil {
					klog.V(2).InfoS("Connecting to the leader failed", "to", to.Addr, "err", err)
				} else {
					if cur != nil {
						_ = cur.conn.Close()
					}
					cur = next
				}
			}
			if cur != nil && cur.to == to {
				buf = b.send(cur, buf)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// dial connects to a leader and starts receiving its answers.
func (b *beater) dial(ctx context.Context, to hb.Leader) (*link, error) {
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to.Addr))
	if err != nil {
		return nil, err
	}
	l := &link{to: to, conn: conn, sessions: map[*hb.KeyPair]*hb.Session{}, byID: map[hb.SessionID]*hb.KeyPair{}}
	b.mu.Lock()
	b.local = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	b.mu.Unlock()
	go b.receive(ctx, l)
	return l, nil
}

// send sends a beat under each key in use; buf is reused.
func (b *beater) send(l *link, buf []byte) []byte {
	for _, key := range b.keys.sending() {
		s, err := l.session(key, b.node)
		if err != nil {
			klog.ErrorS(err, "Agreeing on a heartbeat key with the leader", "node", b.node, "leader", l.to.Addr)
			return buf
		}
		b.mu.Lock()
		b.seq++
		beat := hb.Beat{Node: b.node, Nonce: b.keys.nonce, Seq: b.seq, Term: b.term, Generation: b.generation(),
			LeaseMillis: uint32(b.lease / time.Millisecond)}
		b.sent[b.seq%uint64(len(b.sent))] = sentBeat{seq: b.seq, at: b.now()}
		b.mu.Unlock()
		if buf, err = s.SealBeat(buf[:0], beat); err != nil {
			klog.ErrorS(err, "Sealing a heartbeat", "node", b.node)
			return buf
		}
		if _, err := l.conn.Write(buf); err != nil {
			klog.V(2).InfoS("Sending a heartbeat failed", "to", l.to.Addr, "err", err)
		}
		b.m.beats.WithLabelValues("sent").Inc()
	}
	return buf
}

// session is the session of key with the link's leader.
func (l *link) session(key *hb.KeyPair, node string) (*hb.Session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.sessions[key]; s != nil {
		return s, nil
	}
	s, err := hb.NewAgentSession(key, l.to.Key, node)
	if err != nil {
		return nil, err
	}
	l.sessions[key], l.byID[s.ID] = s, key
	return s, nil
}

// opened checks an answer's MAC and decodes it; it returns the key the answer was
// authenticated for.
func (l *link) opened(data []byte) (hb.Answer, *hb.KeyPair, error) {
	id, ok := hb.PeekSession(data)
	if !ok {
		return hb.Answer{}, nil, hb.ErrMalformed
	}
	l.mu.Lock()
	key := l.byID[id]
	s := l.sessions[key]
	l.mu.Unlock()
	if s == nil {
		return hb.Answer{}, nil, hb.ErrUnknownSession
	}
	ans, err := s.OpenAnswer(data)
	return ans, key, err
}

func (b *beater) receive(ctx context.Context, l *link) {
	buf := make([]byte, 512)
	for {
		n, err := l.conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error of an earlier beat, say
		}
		ans, key, err := l.opened(buf[:n])
		if err != nil {
			b.m.beats.WithLabelValues(openFailure(err)).Inc()
			continue
		}
		b.handle(ans, key)
	}
}

func openFailure(err error) string {
	switch {
	case errors.Is(err, hb.ErrBadMAC):
		return "bad-mac"
	case errors.Is(err, hb.ErrUnknownSession):
		return "unknown-session"
	}
	return "malformed"
}

// handle takes one authenticated answer, under key.
func (b *beater) handle(ans hb.Answer, key *hb.KeyPair) {
	if ans.Nonce != b.keys.nonce || ans.Node != b.node {
		b.m.beats.WithLabelValues("unknown-seq").Inc()
		return // not this start's
	}
	b.mu.Lock()
	s := b.sent[ans.Seq%uint64(len(b.sent))]
	if s.seq != ans.Seq || s.at == 0 {
		b.mu.Unlock()
		b.m.beats.WithLabelValues("unknown-seq").Inc()
		return // too old to know when it was sent
	}
	if ans.Term < b.term {
		b.mu.Unlock()
		b.m.beats.WithLabelValues("stale-term").Inc()
		return // an earlier leader: its word no longer counts
	}
	b.term = ans.Term
	b.mu.Unlock()
	if b.keys.answered(key) {
		b.republish()
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
