package flowcopy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// Conntrack is one conntrack zone of this network namespace: the source of a holder's
// entries and the table a standby writes its copies into.
//
// github.com/ti-mo/conntrack reads (dumps, events). It cannot create an entry with a
// NAT binding (it treats CTA_NAT_SRC as deprecated; so does vishvananda/netlink, which
// has no attribute for it), and a copied entry must carry one: conntrack translates only
// entries whose SNAT binding is set, and that binding can only be given when the entry is
// made. So writes are netlink messages built here with github.com/ti-mo/netfilter's
// encoder, several per sendmsg.
type Conntrack struct {
	zone   uint16
	ct     *conntrack.Conn
	events *netlink.Conn
	fd     int
	seq    uint32
	buf    []byte
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
	return &Conntrack{zone: zone, ct: ct, events: events, fd: fd, buf: make([]byte, 1<<16)}, nil
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

// List is Dump.
func (c *Conntrack) List() ([]Entry, error) { return c.Dump() }

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
// entries. When the kernel drops events (the socket's buffer overflowed), it calls lost.
func (c *Conntrack) Watch(ctx context.Context, note func(Event), lost func()) error {
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

// write sends a batch in one sendmsg and returns each message's errno.
func (c *Conntrack) write(batch []Change) ([]syscall.Errno, error) {
	out := make([]byte, 0, len(batch)*160)
	first := c.seq + 1
	for _, ch := range batch {
		c.seq++
		m, err := c.message(ch)
		if err != nil {
			return nil, err
		}
		m.Header.Sequence = c.seq
		m.Header.Length = uint32(16 + len(m.Data))
		m.Header.Flags |= netlink.Request | netlink.Acknowledge
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	if err := unix.Sendto(c.fd, out, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("writing conntrack: %w", err)
	}
	codes := make([]syscall.Errno, len(batch))
	for got := 0; got < len(batch); {
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
			got++
		}
	}
	return codes, nil
}

// message encodes one change.
func (c *Conntrack) message(ch Change) (netlink.Message, error) {
	e := ch.Entry
	ae := netfilter.NewAttributeEncoder()
	tuple(ae, ctaTupleOrig, e.Pod, e.Dst, e.Proto)
	ae.Uint16(ctaZone, c.zone)
	h := netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: ctNew, Family: netfilter.ProtoIPv4}
	switch ch.Op {
	case Delete:
		h.MessageType = ctDelete
		return netfilter.EncodeNetlink(h, ae)
	case Create:
		h.Flags = netlink.Create | netlink.Excl
		// The reply tuple is given untranslated: the kernel translates it by the NAT
		// binding, and marks the entry SNATed only if that changes it.
		tuple(ae, ctaTupleReply, e.Dst, e.Pod, e.Proto)
		ae.Nested(ctaNATSrc, func(nae *netlink.AttributeEncoder) error {
			ip := e.EgressIP.As4()
			nae.Bytes(ctaNATv4Min, ip[:])
			nae.Bytes(ctaNATv4Max, ip[:])
			nae.Nested(ctaNATProto, func(pae *netlink.AttributeEncoder) error {
				pae.Uint16(ctaNATPortLo, e.NATPort)
				pae.Uint16(ctaNATPortHi, e.NATPort)
				return nil
			})
			return nil
		})
		ae.Uint32(ctaStatus, copiedStatus)
	}
	ae.Uint32(ctaTimeout, max(e.Timeout, 1))
	if e.Proto == unix.IPPROTO_TCP && e.TCP.State != 0 {
		ae.Nested(ctaProtoInfo, func(pae *netlink.AttributeEncoder) error {
			pae.Nested(ctaProtoInfoTCP, func(tae *netlink.AttributeEncoder) error {
				tae.Uint8(ctaTCPState, e.TCP.State)
				tae.Uint8(ctaTCPWScaleOrig, e.TCP.WScaleOrig)
				tae.Uint8(ctaTCPWScaleRepl, e.TCP.WScaleReply)
				tae.Bytes(ctaTCPFlagsOrig, []byte{e.TCP.FlagsOrig & copiedFlags, copiedFlags})
				tae.Bytes(ctaTCPFlagsRepl, []byte{e.TCP.FlagsReply & copiedFlags, copiedFlags})
				return nil
			})
			return nil
		})
	}
	return netfilter.EncodeNetlink(h, ae)
}

func tuple(ae *netlink.AttributeEncoder, typ uint16, src, dst netip.AddrPort, proto uint8) {
	ae.Nested(typ, func(tae *netlink.AttributeEncoder) error {
		tae.Nested(ctaTupleIP, func(iae *netlink.AttributeEncoder) error {
			s, d := src.Addr().As4(), dst.Addr().As4()
			iae.Bytes(ctaIPv4Src, s[:])
			iae.Bytes(ctaIPv4Dst, d[:])
			return nil
		})
		tae.Nested(ctaTupleProto, func(pae *netlink.AttributeEncoder) error {
			pae.Uint8(ctaProtoNum, proto)
			pae.Uint16(ctaProtoSrc, src.Port())
			pae.Uint16(ctaProtoDst, dst.Port())
			return nil
		})
		return nil
	})
}
