package flowcopy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"

	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// Source is the holder's conntrack as the sender reads it, besides its events.
type Source interface {
	// Dump lists the SNAT entries of the gateway's zone.
	Dump() ([]Entry, error)
}

// Event is a change of an entry, as the holder's conntrack reported it.
type Event struct {
	Deleted bool
	Entry   Entry
	// At is when the event was read: the copy's lag counts from it.
	At time.Time
}

// Peer is a standby: its node, its agent's copy address, and its newest published key.
type Peer struct {
	Node string
	Addr netip.AddrPort
	Key  hb.PublicKey
}

// SenderOptions tune a sender; the zero value of each field takes its default.
type SenderOptions struct {
	// Flush is how long changes gather before they are sent (5 ms).
	Flush time.Duration
	// Retransmit is how long an unacknowledged datagram waits before the stream is sent
	// again from it (50 ms).
	Retransmit time.Duration
	// Probe is how long an idle stream waits before it asks for an ack (100 ms).
	Probe time.Duration
	// Snapshot is how often the whole table is sent again (60 s): it refreshes the
	// timeouts of the copies and sweeps those whose deletion was lost.
	Snapshot time.Duration
	// Window is the most datagrams in flight per standby (256).
	Window int
	// Dial opens the socket to a standby (net.DialUDP); tests open it in another
	// network namespace.
	Dial func(to netip.AddrPort) (*net.UDPConn, error)
}

func (o *SenderOptions) defaults() {
	o.Flush = cmpOr(o.Flush, 5*time.Millisecond)
	o.Retransmit = cmpOr(o.Retransmit, 50*time.Millisecond)
	o.Probe = cmpOr(o.Probe, 100*time.Millisecond)
	o.Snapshot = cmpOr(o.Snapshot, time.Minute)
	o.Window = cmpOr(o.Window, 256)
	if o.Dial == nil {
		o.Dial = func(to netip.AddrPort) (*net.UDPConn, error) {
			return net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
		}
	}
}

func cmpOr[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}

// Sender streams the SNAT entries of the IPs this node holds to each IP's standby.
type Sender struct {
	node string
	key  func() *hb.KeyPair
	src  Source
	opts SenderOptions
	m    *Metrics

	mu      sync.Mutex
	routes  map[netip.Addr]string // held IP → standby node
	streams map[string]*stream    // by standby node
	ctx     context.Context
}

// NewSender makes a sender for node, sealing with key's current key pair. Run starts it.
func NewSender(node string, key func() *hb.KeyPair, src Source, opts SenderOptions, m *Metrics) *Sender {
	opts.defaults()
	return &Sender{node: node, key: key, src: src, opts: opts, m: m, routes: map[netip.Addr]string{}, streams: map[string]*stream{}}
}

// Run sends until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	for _, st := range s.streams {
		st.start(ctx)
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		st.close()
	}
}

// Route sets the IPs this node holds and each one's standby. An IP without a standby, or
// with one whose address or key is unknown, is not copied.
func (s *Sender) Route(standbys map[netip.Addr]Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	routes := map[netip.Addr]string{}
	byPeer := map[string][]netip.Addr{}
	peers := map[string]Peer{}
	for ip, p := range standbys {
		routes[ip] = p.Node
		byPeer[p.Node] = append(byPeer[p.Node], ip)
		peers[p.Node] = p
	}
	s.routes = routes
	own := s.key()
	for node, st := range s.streams {
		// A stream seals with the key it started with: a rotated key starts another.
		if _, ok := byPeer[node]; !ok || st.peer != peers[node] || st.own != own {
			st.close()
			delete(s.streams, node)
		}
	}
	for node, ips := range byPeer {
		slices.SortFunc(ips, netip.Addr.Compare)
		st := s.streams[node]
		if st == nil {
			st = newStream(s, peers[node], own)
			s.streams[node] = st
			if s.ctx != nil {
				st.start(s.ctx)
			}
		}
		st.setIPs(ips)
	}
}

// Wants says whether the sender copies entries of ip: it holds ip, and ip has a standby.
func (s *Sender) Wants(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.routes[ip]
	return ok
}

// Note takes an event of the holder's conntrack.
func (s *Sender) Note(ev Event) {
	s.mu.Lock()
	node, ok := s.routes[ev.Entry.EgressIP]
	st := s.streams[node]
	s.mu.Unlock()
	if !ok || st == nil {
		return
	}
	st.note(ev)
}

// Lost says events were lost (the event socket overflowed): every stream sends a snapshot.
func (s *Sender) Lost() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		st.wantSnapshot()
	}
}

// Handover sends what is pending for ips and waits, up to timeout, until their standbys
// have acknowledged it all. It reports whether they did.
func (s *Sender) Handover(ips []netip.Addr, timeout time.Duration) bool {
	s.mu.Lock()
	var wait []*stream
	for _, ip := range ips {
		if st := s.streams[s.routes[ip]]; st != nil && !slices.Contains(wait, st) {
			wait = append(wait, st)
		}
	}
	s.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for _, st := range wait {
		st.kick()
	}
	for _, st := range wait {
		for !st.drained() {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(time.Millisecond)
		}
	}
	return true
}

// CopyStatus is how fresh a standby's copy of one IP's entries is.
type CopyStatus struct {
	IP      netip.Addr
	Standby string
	// InSync: nothing waits to be sent, nothing sent half a second ago or more is
	// unacknowledged, and the standby answered within the last second. (A change in
	// flight for a few milliseconds does not make a copy Behind: the report would flicker.)
	InSync bool
	// AckedAt is when the standby last acknowledged; zero if never.
	AckedAt time.Time
	// Lag is the last acknowledged change's delay, from its event to its ack.
	Lag time.Duration
	// Copies is how many entries the standby holds from this node.
	Copies uint32
}

// Status is the copy's freshness per IP held with a standby.
func (s *Sender) Status() []CopyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []CopyStatus
	for ip, node := range s.routes {
		st := s.streams[node]
		if st == nil {
			continue
		}
		out = append(out, st.status(ip))
	}
	slices.SortFunc(out, func(a, b CopyStatus) int { return a.IP.Compare(b.IP) })
	return out
}

// stream is the copy to one standby.
type stream struct {
	s    *Sender
	peer Peer
	own  *hb.KeyPair // the key the stream seals with

	mu      sync.Mutex
	ips     []netip.Addr
	session *hb.PairSession
	conn    *net.UDPConn
	cancel  context.CancelFunc
	wake    chan struct{}
	counter uint64 // GCM's nonce: every datagram sealed in the session
	id, seq uint64
	pending map[Key]pendingRecord
	queue   []queued // to send, in order; seqs are given when sent
	window  []sent   // sent and not acknowledged, in seq order
	// snapshotDue: a snapshot is to be sent; lastSnapshot: when the last one was queued.
	snapshotDue  bool
	lastSnapshot time.Time
	lastSent     time.Time
	nonce        uint64 // the receiver's, from its acks
	ackedAt      time.Time
	lag          time.Duration
	copies       uint32
	buf          []byte
}

// inSyncWithin is how long a change may wait for its ack with the copy still InSync.
const inSyncWithin = 500 * time.Millisecond

type pendingRecord struct {
	record
	at time.Time // the oldest event folded into it
}

type sent struct {
	msg         dataMsg
	at          time.Time // the oldest event it carries; zero if none
	first, last time.Time // when it was sent first, and last
}

func newStream(s *Sender, p Peer, own *hb.KeyPair) *stream {
	return &stream{s: s, peer: p, own: own, pending: map[Key]pendingRecord{}, wake: make(chan struct{}, 1), snapshotDue: true}
}

func (st *stream) setIPs(ips []netip.Addr) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !slices.Equal(st.ips, ips) {
		st.ips = ips
		st.snapshotDue = true
	}
}

func (st *stream) start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	st.mu.Lock()
	st.cancel = cancel
	st.mu.Unlock()
	go st.run(ctx)
}

func (st *stream) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.cancel != nil {
		st.cancel()
	}
}

func (st *stream) kick() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

func (st *stream) wantSnapshot() {
	st.mu.Lock()
	st.snapshotDue = true
	st.mu.Unlock()
	st.kick()
}

func (st *stream) note(ev Event) {
	st.mu.Lock()
	k := ev.Entry.Key
	p, ok := st.pending[k]
	if !ok || p.at.IsZero() {
		p.at = ev.At
	}
	p.record = record{op: opUpsert, Entry: ev.Entry}
	if ev.Deleted {
		p.op = opDelete
	}
	st.pending[k] = p
	full := len(st.pending) >= 64
	st.mu.Unlock()
	if full {
		st.kick()
	}
}

// drained: nothing pending, queued or unacknowledged.
func (st *stream) drained() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.pending) == 0 && len(st.queue) == 0 && len(st.window) == 0 && !st.snapshotDue
}

func (st *stream) status(ip netip.Addr) CopyStatus {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	caughtUp := len(st.window) == 0 || now.Sub(st.window[0].first) < inSyncWithin
	return CopyStatus{IP: ip, Standby: st.peer.Node, AckedAt: st.ackedAt, Lag: st.lag, Copies: st.copies,
		InSync: caughtUp && len(st.queue) == 0 && !st.snapshotDue && now.Sub(st.ackedAt) < time.Second}
}

func (st *stream) run(ctx context.Context) {
	defer func() {
		st.mu.Lock()
		if st.conn != nil {
			_ = st.conn.Close()
		}
		st.mu.Unlock()
	}()
	t := time.NewTicker(st.s.opts.Flush)
	defer t.Stop()
	for {
		if err := st.connect(ctx); err != nil {
			klog.V(2).InfoS("Connecting to a standby failed", "standby", st.peer.Node, "addr", st.peer.Addr, "err", err)
		} else {
			st.step(time.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-st.wake:
		}
	}
}

// connect makes the session and the socket, once.
func (st *stream) connect(ctx context.Context) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.conn != nil {
		return nil
	}
	sess, err := hb.NewPairSession(st.own, st.peer.Key, st.s.node, st.peer.Node)
	if err != nil {
		return err
	}
	conn, err := st.s.opts.Dial(st.peer.Addr)
	if err != nil {
		return err
	}
	st.session, st.conn = sess, conn
	st.restart()
	go st.receive(ctx, conn, sess)
	return nil
}

// restart begins a new stream: a new id, and a snapshot first. st.mu is held.
func (st *stream) restart() {
	var b [8]byte
	_, _ = rand.Read(b[:])
	st.id, st.seq = binary.BigEndian.Uint64(b[:]), 0
	st.window, st.queue = nil, nil
	st.snapshotDue = true
}

// step queues what is due and sends what the window allows.
func (st *stream) step(now time.Time) {
	st.mu.Lock()
	due := st.snapshotDue || now.Sub(st.lastSnapshot) >= st.s.opts.Snapshot
	st.mu.Unlock()
	if due {
		st.snapshot(now)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.queuePending()
	// Go-back-N: a datagram unacknowledged for too long is sent again, with all after it.
	if len(st.window) > 0 && now.Sub(st.window[0].last) >= st.s.opts.Retransmit {
		for i := range st.window {
			st.send(st.window[i].msg)
			st.window[i].last = now
		}
		st.s.m.retransmits.Add(float64(len(st.window)))
	}
	for len(st.queue) > 0 && len(st.window) < st.s.opts.Window {
		msg := st.queue[0]
		st.queue = st.queue[1:]
		st.seq++
		msg.Stream, msg.Seq = st.id, st.seq
		var oldest time.Time
		if len(msg.Records) > 0 {
			oldest = msg.at
		}
		st.window = append(st.window, sent{msg: msg.dataMsg, at: oldest, first: now, last: now})
		st.send(msg.dataMsg)
	}
	if now.Sub(st.lastSent) >= st.s.opts.Probe {
		st.send(dataMsg{Stream: st.id, Seq: st.seq, Flags: flagProbe})
	}
}

// queuePending moves the pending changes into datagrams. st.mu is held.
func (st *stream) queuePending() {
	if len(st.pending) == 0 || len(st.queue) > st.s.opts.Window {
		return // under backpressure, changes keep folding into pending
	}
	room := dataRoom(st.session, 0)
	var cur queued
	for k, p := range st.pending {
		if cur.at.IsZero() || p.at.Before(cur.at) {
			cur.at = p.at
		}
		cur.Records = append(cur.Records, p.record)
		delete(st.pending, k)
		if len(cur.Records) == room {
			st.queue = append(st.queue, cur)
			cur = queued{}
		}
	}
	if len(cur.Records) > 0 {
		st.queue = append(st.queue, cur)
	}
}

// snapshot queues the whole table of the stream's IPs, between a begin and an end.
func (st *stream) snapshot(now time.Time) {
	entries, err := st.s.src.Dump()
	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		klog.ErrorS(err, "Listing conntrack for a standby's snapshot", "standby", st.peer.Node)
		return
	}
	st.queuePending() // changes noted before the dump go first
	st.snapshotDue, st.lastSnapshot = false, now
	room := dataRoom(st.session, 0)
	first := len(st.queue)
	var cur queued
	for _, e := range entries {
		if !slices.Contains(st.ips, e.EgressIP) {
			continue
		}
		cur.Records = append(cur.Records, record{op: opUpsert, Entry: e})
		if len(cur.Records) == room {
			st.queue = append(st.queue, cur)
			cur = queued{}
		}
	}
	if len(cur.Records) > 0 {
		st.queue = append(st.queue, cur)
	}
	st.queue = append(st.queue, queued{dataMsg: dataMsg{Flags: flagSnapshotEnd, IPs: slices.Clone(st.ips)}})
	st.queue[first].Flags |= flagSnapshotBegin
	st.s.m.snapshots.Inc()
}

type queued struct {
	dataMsg
	at time.Time
}

// send seals and sends one datagram. st.mu is held.
func (st *stream) send(m dataMsg) {
	st.counter++
	st.buf = sealData(st.buf, st.session, st.counter, m)
	if _, err := st.conn.Write(st.buf); err != nil {
		st.s.m.sendErrors.Inc()
	}
	st.lastSent = time.Now()
}

func (st *stream) receive(ctx context.Context, conn *net.UDPConn, sess *hb.PairSession) {
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error of an earlier datagram
		}
		kind, node, id, err := peek(buf[:n])
		if err != nil || kind != kindAck || node != st.peer.Node || id != sess.ID {
			st.s.m.refused.WithLabelValues("malformed").Inc()
			continue
		}
		body, err := open(nil, buf[:n], sess)
		if err != nil {
			st.s.m.refused.WithLabelValues("mac").Inc()
			continue
		}
		ack, err := readAck(body)
		if err != nil {
			st.s.m.refused.WithLabelValues("malformed").Inc()
			continue
		}
		st.acked(ack, time.Now())
	}
}

func (st *stream) acked(a ackMsg, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if a.Stream != st.id {
		return
	}
	if a.Flags&flagUnknownStream != 0 || (st.nonce != 0 && a.Nonce != st.nonce) {
		klog.V(2).InfoS("The standby lost the stream; sending it all again", "standby", st.peer.Node)
		st.nonce = a.Nonce
		st.restart()
		st.kick()
		return
	}
	st.nonce, st.ackedAt, st.copies = a.Nonce, now, a.Copies
	i := 0
	for ; i < len(st.window) && st.window[i].msg.Seq <= a.Acked; i++ {
		if at := st.window[i].at; !at.IsZero() {
			st.lag = now.Sub(at)
			st.s.m.lag.WithLabelValues().Observe(st.lag.Seconds())
		}
	}
	st.window = st.window[i:]
}
