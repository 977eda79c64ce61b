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

	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// Table is a conntrack zone, as the standby writes its copies into it when it takes an
// IP over.
type Table interface {
	// Apply writes a batch of changes in order; it returns how many failed, and the
	// first error. A create of an entry that exists replaces it.
	Apply(changes []Change) (failed int, err error)
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
	// Arrived, if set, is called with each new copy (the benchmarks time them).
	Arrived func(Key)
}

// Receiver keeps the copies other nodes send this one, in memory, until Take hands them
// to the kernel.
//
// A copy is written into conntrack only when this node takes its IP over: at 10,000 new
// connections a second, creating each copy in the kernel as it came cost the standby
// three times the 5 % of a core it may spend (the kernel's NAT setup alone costs about
// 5 µs an entry on a 2-core VM), and conntrack's event for each would reach this node's
// own sender. Held here, a copy costs a map entry; the takeover writes them in batches.
type Receiver struct {
	opts  ReceiverOptions
	m     *Metrics
	nonce uint64

	mu       sync.Mutex
	sessions map[hb.SessionID]*hb.PairSession
	counters map[hb.SessionID]*uint64
	streams  map[string]*inbound // by sender node
	copies   map[ckey]copied
	// body and recs are handle's scratch: one datagram at a time.
	body []byte
	recs []record
	// senders number the nodes copies come from, so that a copy names its sender in
	// two bytes.
	senders map[string]uint16
	// perSender counts the copies of each sender.
	perSender map[uint16]int
}

type inbound struct {
	id, expected uint64
	gen          uint32 // counts the sender's snapshots
}

// ckey is a copy's Key, packed: proto, pod address and port, destination address and
// port. With copied, a copy costs about 64 bytes of map: 100,000 of them, 6 MB.
type ckey [13]byte

func packKey(k Key) ckey {
	var c ckey
	c[0] = k.Proto
	b := appendAddrPort(c[1:1:13], k.Pod)
	appendAddrPort(b[6:6], k.Dst)
	return c
}

// copied is a copy: its record as it came, the sender it came from, the snapshot that
// last listed it, and when it arrived or last changed (its timeout counts from then).
type copied struct {
	rec  [recordSize]byte
	from uint16
	gen  uint32
	at   int64
}

func (c *copied) egressIP() netip.Addr { return netip.AddrFrom4([4]byte(c.rec[14:18])) }

// NewReceiver makes a receiver; Serve serves it.
func NewReceiver(opts ReceiverOptions, m *Metrics) *Receiver {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Receiver{opts: opts, m: m, nonce: binary.BigEndian.Uint64(b[:]) | 1,
		sessions: map[hb.SessionID]*hb.PairSession{}, counters: map[hb.SessionID]*uint64{},
		streams: map[string]*inbound{}, copies: map[ckey]copied{}, senders: map[string]uint16{}, perSender: map[uint16]int{}}
}

// Take removes the copies of ip and returns them, their timeouts counted down to now:
// this node is taking ip over, and its kernel gets them.
func (r *Receiver) Take(ip netip.Addr, now time.Time) []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Entry
	for k, c := range r.copies {
		if c.egressIP() != ip {
			continue
		}
		r.drop(k, c)
		rec, err := readRecord(c.rec[:])
		if err != nil {
			continue // it was read once already
		}
		e := rec.Entry
		if left := time.Duration(e.Timeout)*time.Second - now.Sub(time.Unix(0, c.at)); left > time.Second {
			e.Timeout = uint32(left / time.Second)
			out = append(out, e)
		}
	}
	r.m.copies.Set(float64(len(r.copies)))
	return out
}

// Install writes entries into table, in batches, and says how many failed.
func Install(table Table, entries []Entry) (int, error) {
	changes := make([]Change, len(entries))
	for i, e := range entries {
		changes[i] = Change{Op: Create, Entry: e}
	}
	return table.Apply(changes)
}

// Serve answers datagrams on conn until ctx ends.
func (r *Receiver) Serve(ctx context.Context, conn *net.UDPConn) error {
	go func() {
		<-ctx.Done()
		_ = conn.Close()
	}()
	buf := make([]byte, 2048)
	var out []byte
	// An ack waits up to ackDelay for the datagrams behind it, and answers them all:
	// acknowledging each of 200 datagrams a second cost the standby more than keeping
	// their 10,000 entries.
	var pending *reply
	var pendingTo netip.AddrPort
	waiting := 0
	flush := func() {
		if pending != nil {
			out = sealAck(out, pending.sess, r.nextCounter(pending.sess), pending.ack)
			_, _ = conn.WriteToUDPAddrPort(out, pendingTo)
			pending, waiting = nil, 0
		}
	}
	for {
		deadline := time.Time{}
		if pending != nil {
			deadline = time.Now().Add(ackDelay)
		}
		_ = conn.SetReadDeadline(deadline)
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			flush() // the deadline: nothing more came
			continue
		}
		rep, ok := r.handle(buf[:n], time.Now())
		if !ok {
			continue
		}
		if pending != nil && (pending.sess != rep.sess || pendingTo != from) {
			flush()
		}
		pending, pendingTo = &rep, from
		if waiting++; rep.now || waiting >= 16 {
			flush()
		}
	}
}

// ackDelay is how long an ack waits for more datagrams: a holder sends a batch every 5
// ms (SenderOptions.Flush), so two batches share an ack.
const ackDelay = 10 * time.Millisecond

// reply is the ack a datagram calls for, in its session; now: send it without waiting
// (the sender asked, or must restart).
type reply struct {
	ack  ackMsg
	sess *hb.PairSession
	now  bool
}

func (r *Receiver) nextCounter(s *hb.PairSession) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counters[s.ID]
	*c++
	return *c
}

// handle takes one datagram; it returns the ack to send, if any.
func (r *Receiver) handle(b []byte, now time.Time) (reply, bool) {
	kind, node, id, err := peek(b)
	if err != nil || kind != kindData {
		r.m.refused.WithLabelValues("malformed").Inc()
		return reply{}, false
	}
	sess := r.session(node, id)
	if sess == nil {
		r.m.refused.WithLabelValues("unknown-session").Inc()
		return reply{}, false
	}
	body, err := open(r.body[:0], b, sess)
	if err != nil {
		r.m.refused.WithLabelValues("mac").Inc()
		return reply{}, false
	}
	r.body = body
	msg, err := readData(body, r.recs)
	r.recs = msg.Records
	if err != nil {
		r.m.refused.WithLabelValues("malformed").Inc()
		return reply{}, false
	}
	r.mu.Lock()
	in := r.streams[node]
	if in == nil || in.id != msg.Stream {
		if msg.Seq != 1 || msg.Flags&flagProbe != 0 {
			r.mu.Unlock()
			if msg.Seq == 0 {
				return reply{ack: ackMsg{Stream: msg.Stream, Nonce: r.nonce, Copies: r.keptFrom(node)}, sess: sess, now: true}, true
			}
			return reply{ack: ackMsg{Stream: msg.Stream, Nonce: r.nonce, Flags: flagUnknownStream}, sess: sess, now: true}, true
		}
		gen := uint32(0)
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
	return reply{ack: ackMsg{Stream: msg.Stream, Acked: acked, Nonce: r.nonce, Copies: r.keptFrom(node)}, sess: sess,
		now: msg.Flags&(flagProbe|flagSnapshotEnd) != 0}, true
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

// apply keeps one datagram's records, then sweeps after a snapshot's end.
func (r *Receiver) apply(node string, in *inbound, msg dataMsg, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if msg.Flags&flagSnapshotBegin != 0 {
		in.gen++
	}
	from, ok := r.senders[node]
	if !ok {
		from = uint16(len(r.senders))
		r.senders[node] = from
	}
	for _, rec := range msg.Records {
		r.keep(from, in.gen, rec, now)
	}
	if msg.Flags&flagSnapshotEnd != 0 {
		for k, c := range r.copies {
			if c.gen < in.gen && c.from == from && containsAddr(msg.IPs, c.egressIP()) {
				r.drop(k, c)
				r.m.records.WithLabelValues("sweep").Inc()
			}
		}
	}
	r.m.copies.Set(float64(len(r.copies)))
}

// drop forgets a copy. r.mu is held.
func (r *Receiver) drop(k ckey, c copied) {
	delete(r.copies, k)
	r.perSender[c.from]--
}

// keptFrom is how many copies node's records left here.
func (r *Receiver) keptFrom(node string) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	from, ok := r.senders[node]
	if !ok {
		return 0
	}
	return uint32(r.perSender[from])
}

// keep takes one record. r.mu is held.
func (r *Receiver) keep(from uint16, gen uint32, rec record, now time.Time) {
	k := packKey(rec.Key)
	old, have := r.copies[k]
	switch {
	case rec.op == opDelete:
		if have {
			r.drop(k, old)
			r.m.records.WithLabelValues("delete").Inc()
		}
	case !have && len(r.copies) >= r.opts.MaxCopies:
		r.m.refused.WithLabelValues("full").Inc()
	default:
		c := copied{from: from, gen: gen, at: now.UnixNano()}
		appendRecord(c.rec[:0], rec)
		if have {
			r.perSender[old.from]--
		}
		r.perSender[from]++
		r.copies[k] = c
		op := "update"
		if !have {
			op = "create"
			if r.opts.Arrived != nil {
				r.opts.Arrived(rec.Key)
			}
		}
		r.m.records.WithLabelValues(op).Inc()
	}
}

func containsAddr(ips []netip.Addr, ip netip.Addr) bool {
	for _, a := range ips {
		if a == ip {
			return true
		}
	}
	return false
}
