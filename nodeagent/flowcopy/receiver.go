package flowcopy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"k8s.io/klog/v2"

	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// Table is the standby's conntrack zone, as the receiver writes it.
type Table interface {
	// Apply writes a batch of changes in order; it returns how many failed, and the
	// first error. A create of an entry that exists replaces it.
	Apply(changes []Change) (failed int, err error)
	// List lists the SNAT entries of the zone.
	List() ([]Entry, error)
}

// Change is one write to the standby's zone.
type Change struct {
	Op    ChangeOp
	Entry Entry
}

// ChangeOp is what a Change does.
type ChangeOp uint8

const (
	Create ChangeOp = iota + 1
	Update
	Delete
)

// ReceiverOptions are what the receiver needs to know of the cluster, from the agent's
// caches.
type ReceiverOptions struct {
	Node string
	// Keys are this agent's key pairs, newest first.
	Keys func() []*hb.KeyPair
	// PeerKeys are the keys another node's agent published.
	PeerKeys func(node string) []hb.PublicKey
	// Accept says whether node may send entries of ip: it holds ip, and this node does
	// not.
	Accept func(ip netip.Addr, node string) bool
	// MaxCopies bounds the entries kept (and the receiver's memory).
	MaxCopies int
	// Refresh: a copy's timeout is the holder's plus this, so that it outlives the
	// holder's entry until the next snapshot refreshes it (the sender's Snapshot, twice).
	Refresh time.Duration
}

// Receiver keeps the copies other nodes send this one.
type Receiver struct {
	opts  ReceiverOptions
	table Table
	m     *Metrics
	nonce uint64

	mu       sync.Mutex
	sessions map[hb.SessionID]*hb.PairSession
	counters map[hb.SessionID]*uint64
	streams  map[string]*inbound // by sender node
	copies   map[Key]copied
}

type inbound struct {
	id, expected uint64
	gen          uint64 // counts the sender's snapshots
}

// copied is what the receiver remembers of a copy: enough to update it in place, and to
// sweep it after a snapshot that no longer lists it.
type copied struct {
	ip      netip.Addr
	port    uint16
	state   uint8
	from    string
	gen     uint64
	expires time.Time
}

// NewReceiver makes a receiver; Load, then Serve.
func NewReceiver(opts ReceiverOptions, table Table, m *Metrics) *Receiver {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Receiver{opts: opts, table: table, m: m, nonce: binary.BigEndian.Uint64(b[:]) | 1,
		sessions: map[hb.SessionID]*hb.PairSession{}, counters: map[hb.SessionID]*uint64{},
		streams: map[string]*inbound{}, copies: map[Key]copied{}}
}

// Load takes the copies a previous run left in the zone: those of IPs this node does not
// hold. The holders' next snapshots sweep the stale ones.
func (r *Receiver) Load(holds func(netip.Addr) bool) error {
	entries, err := r.table.List()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range entries {
		if !holds(e.EgressIP) {
			r.copies[e.Key] = copied{ip: e.EgressIP, port: e.NATPort, state: e.TCP.State,
				expires: time.Now().Add(time.Duration(e.Timeout) * time.Second)}
		}
	}
	r.m.copies.Set(float64(len(r.copies)))
	return nil
}

// Copies is how many entries the receiver keeps.
func (r *Receiver) Copies() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.copies)
}

// Serve answers datagrams on conn until ctx ends.
func (r *Receiver) Serve(ctx context.Context, conn *net.UDPConn) error {
	go func() {
		<-ctx.Done()
		_ = conn.Close()
	}()
	buf := make([]byte, 2048)
	var out []byte
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		if ack, sess, ok := r.handle(buf[:n], time.Now()); ok {
			out = sealAck(out, sess, r.nextCounter(sess), ack)
			_, _ = conn.WriteToUDPAddrPort(out, from)
		}
	}
}

func (r *Receiver) nextCounter(s *hb.PairSession) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counters[s.ID]
	*c++
	return *c
}

// handle takes one datagram; it returns the ack to send, if any.
func (r *Receiver) handle(b []byte, now time.Time) (ackMsg, *hb.PairSession, bool) {
	kind, node, id, err := peek(b)
	if err != nil || kind != kindData {
		r.m.refused.WithLabelValues("malformed").Inc()
		return ackMsg{}, nil, false
	}
	sess := r.session(node, id)
	if sess == nil {
		r.m.refused.WithLabelValues("unknown-session").Inc()
		return ackMsg{}, nil, false
	}
	body, err := open(b, sess)
	if err != nil {
		r.m.refused.WithLabelValues("mac").Inc()
		return ackMsg{}, nil, false
	}
	msg, err := readData(body)
	if err != nil {
		r.m.refused.WithLabelValues("malformed").Inc()
		return ackMsg{}, nil, false
	}
	r.mu.Lock()
	in := r.streams[node]
	if in == nil || in.id != msg.Stream {
		if msg.Seq != 1 || msg.Flags&flagProbe != 0 {
			r.mu.Unlock()
			if msg.Seq == 0 {
				return ackMsg{Stream: msg.Stream, Nonce: r.nonce, Copies: uint32(r.Copies())}, sess, true
			}
			return ackMsg{Stream: msg.Stream, Nonce: r.nonce, Flags: flagUnknownStream}, sess, true
		}
		gen := uint64(0)
		if in != nil {
			gen = in.gen
		}
		in = &inbound{id: msg.Stream, expected: 1, gen: gen}
		r.streams[node] = in
	}
	apply := msg.Flags&flagProbe == 0 && msg.Seq == in.expected
	if apply && !r.acceptable(node, msg) {
		// Not taken, and not acknowledged: the sender sends it again, and this node's
		// cache, behind a move, may show the sender holding the IP by then.
		apply = false
		r.m.refused.WithLabelValues("not-holder").Inc()
	}
	if apply {
		in.expected++
	}
	acked := in.expected - 1
	r.mu.Unlock()
	if apply {
		r.apply(node, in, msg, now)
	}
	return ackMsg{Stream: msg.Stream, Acked: acked, Nonce: r.nonce, Copies: uint32(r.Copies())}, sess, true
}

// acceptable: every record is of an IP node may send.
func (r *Receiver) acceptable(node string, msg dataMsg) bool {
	for _, rec := range msg.Records {
		if !r.opts.Accept(rec.EgressIP, node) {
			return false
		}
	}
	return true
}

// session finds the session id names, among this agent's keys and those node published.
func (r *Receiver) session(node string, id hb.SessionID) *hb.PairSession {
	r.mu.Lock()
	s := r.sessions[id]
	r.mu.Unlock()
	if s != nil {
		if s.Peer != node {
			return nil
		}
		return s
	}
	for _, own := range r.opts.Keys() {
		for _, peer := range r.opts.PeerKeys(node) {
			cand, err := hb.NewPairSession(own, peer, r.opts.Node, node)
			if err != nil || cand.ID != id {
				continue
			}
			r.mu.Lock()
			if len(r.sessions) > 1024 {
				clear(r.sessions) // keys rotate: old sessions go, live ones come back
				clear(r.counters)
			}
			r.sessions[id], r.counters[id] = cand, new(uint64)
			r.mu.Unlock()
			return cand
		}
	}
	return nil
}

// apply writes one datagram's records, then sweeps after a snapshot's end.
func (r *Receiver) apply(node string, in *inbound, msg dataMsg, now time.Time) {
	r.mu.Lock()
	if msg.Flags&flagSnapshotBegin != 0 {
		in.gen++
	}
	var changes []Change
	for _, rec := range msg.Records {
		changes = r.change(changes, node, in.gen, rec, now)
	}
	if msg.Flags&flagSnapshotEnd != 0 {
		for k, c := range r.copies {
			if c.gen < in.gen && (c.from == node || c.from == "") && containsAddr(msg.IPs, c.ip) && r.opts.Accept(c.ip, node) {
				changes = append(changes, Change{Op: Delete, Entry: Entry{Key: k, EgressIP: c.ip, NATPort: c.port}})
				delete(r.copies, k)
				r.m.records.WithLabelValues("sweep").Inc()
			}
		}
	}
	r.m.copies.Set(float64(len(r.copies)))
	r.mu.Unlock()
	if len(changes) == 0 {
		return
	}
	failed, err := r.table.Apply(changes)
	if failed > 0 {
		r.m.records.WithLabelValues("error").Add(float64(failed))
		klog.V(2).InfoS("Writing copied conntrack entries", "from", node, "failed", failed, "err", err)
	}
}

// change turns a record into the write it needs, if any. r.mu is held.
func (r *Receiver) change(out []Change, node string, gen uint64, rec record, now time.Time) []Change {
	e := rec.Entry
	e.Timeout += uint32(r.opts.Refresh / time.Second)
	c, have := r.copies[e.Key]
	if rec.op == opDelete {
		if have {
			delete(r.copies, e.Key)
			r.m.records.WithLabelValues("delete").Inc()
			return append(out, Change{Op: Delete, Entry: e})
		}
		return out
	}
	next := copied{ip: e.EgressIP, port: e.NATPort, state: e.TCP.State, from: node, gen: gen,
		expires: now.Add(time.Duration(e.Timeout) * time.Second)}
	switch {
	case have && c.ip == e.EgressIP && c.port == e.NATPort:
		// The same translation: update TCP's state, or a timeout that would end before
		// the next refresh; otherwise nothing changes in the kernel.
		if c.state == e.TCP.State && c.expires.Sub(now) > r.opts.Refresh {
			next.expires = c.expires
			r.copies[e.Key] = next
			return out
		}
		r.copies[e.Key] = next
		r.m.records.WithLabelValues("update").Inc()
		return append(out, Change{Op: Update, Entry: e})
	case !have && len(r.copies) >= r.opts.MaxCopies:
		r.m.refused.WithLabelValues("full").Inc()
		return out
	}
	// New, or translated anew (the holder's entry was made again): created, replacing.
	r.copies[e.Key] = next
	r.m.records.WithLabelValues("create").Inc()
	return append(out, Change{Op: Create, Entry: e})
}

func containsAddr(ips []netip.Addr, ip netip.Addr) bool {
	for _, a := range ips {
		if a == ip {
			return true
		}
	}
	return false
}
