package flowcopy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// Conntrack is one conntrack zone of this network namespace: the source of a holder's
// entries and the table a standby writes its copies into.
//
// github.com/ti-mo/conntrack reads (dumps, events). It cannot create an entry with a
// NAT binding (it treats CTA_NAT_SRC as deprecated; vishvananda/netlink has no attribute
// for it either), and a copied entry must carry one: conntrack translates only entries
// whose SNAT binding is set, and that binding can only be given when the entry is made.
// So writes are ctnetlink messages encoded here, a batch per sendmsg: at 10,000 copies a
// second, a library's encoder allocating per attribute and an acknowledgement per
// message cost the standby more than the kernel's own work.
type Conntrack struct {
	zone   uint16
	ct     *conntrack.Conn
	events *netlink.Conn
	fd     int
	seq    uint32
	buf    []byte // answers read
	out    []byte // messages written
	// mu serializes writes (the sequence numbers and buffers above).
	mu sync.Mutex

	// marks are the sentinels Drain waits for, by their source port.
	marksMu sync.Mutex
	marks   map[uint16]chan struct{}
	markSeq uint16
}

var (
	_ Source = &Conntrack{}
	_ Table  = &Conntrack{}
)

// Open opens conntrack's zone in this network namespace.
func Open(zone uint16) (*Conntrack, error) {
	ct, err := conntrack.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("opening conntrack: %w", err)
	}
	// The events socket joins conntrack's groups only when Watch starts.
	events, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		_ = ct.Close()
		return nil, fmt.Errorf("opening conntrack's events: %w", err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		_ = ct.Close()
		_ = events.Close()
		return nil, fmt.Errorf("opening a netfilter socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		_ = unix.Close(fd)
		_ = ct.Close()
		_ = events.Close()
		return nil, fmt.Errorf("binding a netfilter socket: %w", err)
	}
	// Every write is acknowledged; a batch's acks must fit.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &Conntrack{zone: zone, ct: ct, events: events, fd: fd, buf: make([]byte, 1<<16), marks: map[uint16]chan struct{}{}}, nil
}

// Close closes the sockets.
func (c *Conntrack) Close() error {
	return errors.Join(c.ct.Close(), c.events.Close(), unix.Close(c.fd))
}

// Dump lists the zone's SNAT entries of TCP and UDP.
func (c *Conntrack) Dump() ([]Entry, error) {
	flows, err := c.ct.DumpFilter(conntrack.NewFilter().Zone(c.zone), nil)
	if err != nil {
		return nil, fmt.Errorf("listing conntrack zone %d: %w", c.zone, err)
	}
	out := make([]Entry, 0, len(flows))
	for i := range flows {
		if e, ok := entryOf(&flows[i], c.zone); ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// entryOf reads a flow of the zone SNATed to another address.
func entryOf(f *conntrack.Flow, zone uint16) (Entry, bool) {
	o, r := f.TupleOrig, f.TupleReply
	if f.Zone != zone || !f.Status.SrcNAT() || (o.Proto.Protocol != unix.IPPROTO_TCP && o.Proto.Protocol != unix.IPPROTO_UDP) ||
		!o.IP.SourceAddress.Is4() || !r.IP.DestinationAddress.Is4() {
		return Entry{}, false
	}
	e := Entry{
		Key: Key{Proto: o.Proto.Protocol,
			Pod: netip.AddrPortFrom(o.IP.SourceAddress, o.Proto.SourcePort),
			Dst: netip.AddrPortFrom(o.IP.DestinationAddress, o.Proto.DestinationPort)},
		EgressIP: r.IP.DestinationAddress, NATPort: r.Proto.DestinationPort, Timeout: f.Timeout,
	}
	if t := f.ProtoInfo.TCP; t != nil {
		// Each flags attribute is struct nf_ct_tcp_flags {flags, mask}, read big-endian.
		e.TCP = TCPInfo{State: t.State, WScaleOrig: t.OriginalWindowScale, WScaleReply: t.ReplyWindowScale,
			FlagsOrig: uint8(t.OriginalFlags >> 8), FlagsReply: uint8(t.ReplyFlags >> 8)}
	}
	return e, true
}

// Watch reads conntrack's events until ctx ends, and passes on those of the zone's SNAT
// entries whose egress IP want takes. When the kernel drops events (the socket's buffer
// overflowed), it calls lost. Every conntrack change of the node is an event, so each is
// looked at in place first (zone and reply address): only those wanted are decoded.
func (c *Conntrack) Watch(ctx context.Context, want func(netip.Addr) bool, note func(Event), lost func()) error {
	conn := c.events
	for _, g := range []uint32{unix.NFNLGRP_CONNTRACK_NEW, unix.NFNLGRP_CONNTRACK_UPDATE, unix.NFNLGRP_CONNTRACK_DESTROY} {
		if err := conn.JoinGroup(g); err != nil {
			return fmt.Errorf("listening to conntrack events: %w", err)
		}
	}
	if raw, err := conn.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		})
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		msgs, err := conn.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, unix.ENOBUFS) {
				lost()
				continue
			}
			return fmt.Errorf("reading conntrack events: %w", err)
		}
		now := time.Now()
		for _, m := range msgs {
			zone, ip, ok := peekEvent(m.Data)
			if ok && zone == c.zone && ip == sentinelSrc {
				c.marked(m)
				continue
			}
			if !ok || zone != c.zone || !want(ip) {
				continue
			}
			var ev conntrack.Event
			if err := ev.Unmarshal(m); err != nil || ev.Flow == nil {
				continue
			}
			e, ok := entryOf(ev.Flow, c.zone)
			if !ok {
				continue
			}
			note(Event{Deleted: ev.Type == conntrack.EventDestroy, Entry: e, At: now})
		}
	}
}

// The sentinels Drain makes: UDP from sentinelSrc to sentinelDst:9 in the zone, never
// SNATed, so no sender takes them for a connection.
var (
	sentinelSrc = netip.MustParseAddr("127.0.0.1")
	sentinelDst = netip.MustParseAddrPort("127.0.0.2:9")
)

// Drain returns once Watch has read every event the kernel sent before the call (up to
// timeout): it makes a sentinel entry, whose event comes after them on the socket, waits
// for Watch to read it, and deletes it. It reports whether the sentinel came back.
func (c *Conntrack) Drain(timeout time.Duration) bool {
	c.marksMu.Lock()
	c.markSeq++
	port := 1024 + c.markSeq%60000
	done := make(chan struct{})
	c.marks[port] = done
	c.marksMu.Unlock()
	defer func() {
		c.marksMu.Lock()
		delete(c.marks, port)
		c.marksMu.Unlock()
	}()
	e := Entry{Key: Key{Proto: unix.IPPROTO_UDP, Pod: netip.AddrPortFrom(sentinelSrc, port), Dst: sentinelDst},
		EgressIP: sentinelSrc, NATPort: port, Timeout: 5}
	if _, err := c.Apply([]Change{{Op: Create, Entry: e}}); err != nil {
		return false
	}
	defer func() { _, _ = c.Apply([]Change{{Op: Delete, Entry: e}}) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// marked notes that Watch read a sentinel's event.
func (c *Conntrack) marked(m netlink.Message) {
	var ev conntrack.Event
	if err := ev.Unmarshal(m); err != nil || ev.Flow == nil || ev.Type != conntrack.EventNew {
		return
	}
	c.marksMu.Lock()
	defer c.marksMu.Unlock()
	if done, ok := c.marks[ev.Flow.TupleOrig.Proto.SourcePort]; ok {
		close(done)
		delete(c.marks, ev.Flow.TupleOrig.Proto.SourcePort)
	}
}

// peekEvent reads an event's zone and its reply tuple's destination, without decoding
// the rest. data is the message after its netlink header: nfgenmsg, then attributes.
func peekEvent(data []byte) (zone uint16, ip netip.Addr, ok bool) {
	attrs := func(b []byte, f func(typ uint16, v []byte)) {
		for len(b) >= 4 {
			n := int(binary.NativeEndian.Uint16(b))
			if n < 4 || n > len(b) {
				return
			}
			f(binary.NativeEndian.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[4:n])
			b = b[min(len(b), (n+3)&^3):]
		}
	}
	if len(data) < 4 {
		return 0, ip, false
	}
	attrs(data[4:], func(typ uint16, v []byte) {
		switch typ {
		case ctaZone:
			if len(v) >= 2 {
				zone = binary.BigEndian.Uint16(v)
			}
		case ctaTupleReply:
			attrs(v, func(typ uint16, v []byte) {
				if typ == ctaTupleIP {
					attrs(v, func(typ uint16, v []byte) {
						if typ == ctaIPv4Dst && len(v) == 4 {
							ip, ok = netip.AddrFrom4([4]byte(v)), true
						}
					})
				}
			})
		}
	})
	return zone, ip, ok
}

// Conntrack's message types and attributes (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const (
	ctNew    = 0
	ctDelete = 2

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaStatus     = 3
	ctaProtoInfo  = 4
	ctaNATSrc     = 6
	ctaTimeout    = 7
	ctaZone       = 18

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaProtoNum   = 1
	ctaProtoSrc   = 2
	ctaProtoDst   = 3

	ctaProtoInfoTCP  = 1
	ctaTCPState      = 1
	ctaTCPWScaleOrig = 2
	ctaTCPWScaleRepl = 3
	ctaTCPFlagsOrig  = 4
	ctaTCPFlagsRepl  = 5

	ctaNATv4Min  = 1
	ctaNATv4Max  = 2
	ctaNATProto  = 3
	ctaNATPortLo = 1
	ctaNATPortHi = 2

	// seen reply, assured (the copy of an entry in use, never the first dropped when the
	// table is full), confirmed (as every created entry is: the kernel refuses a status
	// without it).
	copiedStatus = 1<<1 | 1<<2 | 1<<3
)

// Apply writes the changes, a batch per sendmsg, each acknowledged. A create that finds
// the entry there already replaces it (its translation cannot be changed in place).
func (c *Conntrack) Apply(changes []Change) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	failed, errs, exists := 0, []error(nil), []Change(nil)
	for start := 0; start < len(changes); start += 128 {
		batch := changes[start:min(start+128, len(changes))]
		codes, err := c.write(batch)
		if err != nil {
			return len(changes) - start, err
		}
		for i, code := range codes {
			switch {
			case code == 0:
			case code == unix.EEXIST && batch[i].Op == Create:
				exists = append(exists, Change{Op: Delete, Entry: batch[i].Entry}, batch[i])
			case code == unix.ENOENT && batch[i].Op == Delete:
				// gone already (its timeout ended)
			default:
				failed++
				errs = append(errs, fmt.Errorf("%v of %s: %w", batch[i].Op, batch[i].Entry, code))
			}
		}
	}
	if len(exists) > 0 {
		codes, err := c.write(exists)
		if err != nil {
			return failed + len(exists)/2, err
		}
		for i := 1; i < len(codes); i += 2 {
			if codes[i] != 0 {
				failed++
				errs = append(errs, fmt.Errorf("replacing %s: %w", exists[i].Entry, codes[i]))
			}
		}
	}
	if len(errs) > 0 {
		return failed, errs[0]
	}
	return 0, nil
}

func (o ChangeOp) String() string {
	switch o {
	case Create:
		return "create"
	case Update:
		return "update"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("op %d", uint8(o))
}

// write sends a batch in one sendmsg and returns each message's errno. Only the last
// message asks for an acknowledgement: the kernel answers the others only when they
// fail, and the last one's answer says that it went through them all.
func (c *Conntrack) write(batch []Change) ([]syscall.Errno, error) {
	e := nlEncoder{b: c.out[:0]}
	first := c.seq + 1
	for i, ch := range batch {
		c.seq++
		flags := uint16(unix.NLM_F_REQUEST)
		if i == len(batch)-1 {
			flags |= unix.NLM_F_ACK
		}
		c.message(&e, ch, flags)
	}
	c.out = e.b
	if err := unix.Sendto(c.fd, e.b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("writing conntrack: %w", err)
	}
	codes := make([]syscall.Errno, len(batch))
	for done := false; !done; {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			return nil, fmt.Errorf("reading conntrack's answers: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(c.buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			i := int(m.Header.Seq - first)
			if m.Header.Type != unix.NLMSG_ERROR || i < 0 || i >= len(batch) || len(m.Data) < 4 {
				continue
			}
			codes[i] = syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data)))
			done = done || i == len(batch)-1
		}
	}
	return codes, nil
}

// message appends one change's netlink message.
func (c *Conntrack) message(e *nlEncoder, ch Change, flags uint16) {
	x := ch.Entry
	typ := uint16(unix.NFNL_SUBSYS_CTNETLINK<<8 | ctNew)
	switch ch.Op {
	case Delete:
		typ = unix.NFNL_SUBSYS_CTNETLINK<<8 | ctDelete
	case Create:
		flags |= unix.NLM_F_CREATE | unix.NLM_F_EXCL
	}
	msg := e.begin(typ, flags, c.seq)
	e.tuple(ctaTupleOrig, x.Pod, x.Dst, x.Proto)
	e.be16(ctaZone, c.zone)
	if ch.Op == Create {
		// The reply tuple is given untranslated: the kernel translates it by the NAT
		// binding, and marks the entry SNATed only if that changes it.
		e.tuple(ctaTupleReply, x.Dst, x.Pod, x.Proto)
		nat := e.nest(ctaNATSrc)
		ip := x.EgressIP.As4()
		e.attr(ctaNATv4Min, ip[:]...)
		e.attr(ctaNATv4Max, ip[:]...)
		ports := e.nest(ctaNATProto)
		e.be16(ctaNATPortLo, x.NATPort)
		e.be16(ctaNATPortHi, x.NATPort)
		e.end(ports)
		e.end(nat)
		e.be32(ctaStatus, copiedStatus)
	}
	if ch.Op != Delete {
		e.be32(ctaTimeout, max(x.Timeout, 1))
		if x.Proto == unix.IPPROTO_TCP && x.TCP.State != 0 {
			info := e.nest(ctaProtoInfo)
			tcp := e.nest(ctaProtoInfoTCP)
			e.attr(ctaTCPState, x.TCP.State)
			e.attr(ctaTCPWScaleOrig, x.TCP.WScaleOrig)
			e.attr(ctaTCPWScaleRepl, x.TCP.WScaleReply)
			e.attr(ctaTCPFlagsOrig, x.TCP.FlagsOrig&copiedFlags, copiedFlags)
			e.attr(ctaTCPFlagsRepl, x.TCP.FlagsReply&copiedFlags, copiedFlags)
			e.end(tcp)
			e.end(info)
		}
	}
	e.finish(msg)
}

// nlEncoder appends netlink messages of ctnetlink to one buffer, without allocating.
type nlEncoder struct{ b []byte }

// begin appends a message header and nfgenmsg (IPv4, version 0); finish sets its length.
func (e *nlEncoder) begin(typ, flags uint16, seq uint32) int {
	at := len(e.b)
	e.b = binary.NativeEndian.AppendUint32(e.b, 0)
	e.b = binary.NativeEndian.AppendUint16(e.b, typ)
	e.b = binary.NativeEndian.AppendUint16(e.b, flags)
	e.b = binary.NativeEndian.AppendUint32(e.b, seq)
	e.b = binary.NativeEndian.AppendUint32(e.b, 0)
	e.b = append(e.b, unix.AF_INET, unix.NFNETLINK_V0, 0, 0)
	return at
}

func (e *nlEncoder) finish(at int) {
	binary.NativeEndian.PutUint32(e.b[at:], uint32(len(e.b)-at))
}

func (e *nlEncoder) attr(typ uint16, data ...byte) {
	e.b = binary.NativeEndian.AppendUint16(e.b, uint16(4+len(data)))
	e.b = binary.NativeEndian.AppendUint16(e.b, typ)
	e.b = append(e.b, data...)
	for len(e.b)%4 != 0 {
		e.b = append(e.b, 0)
	}
}

func (e *nlEncoder) be16(typ, v uint16) { e.attr(typ, byte(v>>8), byte(v)) }

func (e *nlEncoder) be32(typ uint16, v uint32) {
	e.attr(typ, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// nest opens a nested attribute; end closes it.
func (e *nlEncoder) nest(typ uint16) int {
	at := len(e.b)
	e.b = binary.NativeEndian.AppendUint16(e.b, 0)
	e.b = binary.NativeEndian.AppendUint16(e.b, typ|unix.NLA_F_NESTED)
	return at
}

func (e *nlEncoder) end(at int) {
	binary.NativeEndian.PutUint16(e.b[at:], uint16(len(e.b)-at))
}

func (e *nlEncoder) tuple(typ uint16, src, dst netip.AddrPort, proto uint8) {
	t := e.nest(typ)
	ip := e.nest(ctaTupleIP)
	s, d := src.Addr().As4(), dst.Addr().As4()
	e.attr(ctaIPv4Src, s[:]...)
	e.attr(ctaIPv4Dst, d[:]...)
	e.end(ip)
	p := e.nest(ctaTupleProto)
	e.attr(ctaProtoNum, proto)
	e.be16(ctaProtoSrc, src.Port())
	e.be16(ctaProtoDst, dst.Port())
	e.end(p)
	e.end(t)
}
