package floatingip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// linuxKernel reaches netlink through a handle, and opens AF_PACKET sockets with
// mdlayher/packet (ARP frames built by mdlayher/arp). With ns open, both work in that
// network namespace instead of the caller's: the tests use it.
type linuxKernel struct {
	nl *netlink.Handle
	ns netns.NsHandle
}

var _ kernel = &linuxKernel{}

func newKernel() kernel {
	// A zero Handle opens a socket per request in the calling thread's namespace, as
	// netlink's package functions do.
	return &linuxKernel{nl: &netlink.Handle{}, ns: netns.None()}
}

// dumpTries bounds retries of a dump the kernel interrupted because something changed.
const dumpTries = 5

func (k *linuxKernel) Links() ([]link, error) {
	var ls []netlink.Link
	var err error
	for range dumpTries {
		if ls, err = k.nl.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	out := make([]link, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		out = append(out, link{
			Index:    a.Index,
			Name:     a.Name,
			Kind:     l.Type(),
			MAC:      a.HardwareAddr,
			Up:       a.Flags&net.FlagUp != 0 && operUp(a.OperState),
			Loopback: a.Flags&net.FlagLoopback != 0,
			NoARP:    a.RawFlags&unix.IFF_NOARP != 0,
		})
	}
	return out, nil
}

// operUp is false only for states in which the link cannot carry packets: many drivers
// never report more than "unknown".
func operUp(s netlink.LinkOperState) bool {
	return s != netlink.OperDown && s != netlink.OperLowerLayerDown && s != netlink.OperNotPresent
}

func (k *linuxKernel) Addrs() ([]address, error) {
	var as []netlink.Addr
	var err error
	for range dumpTries {
		if as, err = k.nl.AddrList(nil, netlink.FAMILY_V4); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	out := make([]address, 0, len(as))
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		out = append(out, address{
			LinkIndex:    a.LinkIndex,
			Prefix:       netip.PrefixFrom(ip, bits),
			Label:        a.Label,
			PointToPoint: a.Peer != nil && !a.Peer.IP.Equal(a.IP),
		})
	}
	return out, nil
}

func (k *linuxKernel) Routers() (map[int][]netip.Addr, error) {
	var rs []netlink.Route
	var err error
	for range dumpTries {
		if rs, err = k.nl.RouteList(nil, netlink.FAMILY_V4); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	out := map[int][]netip.Addr{}
	add := func(link int, gw net.IP) {
		if ip, ok := netip.AddrFromSlice(gw.To4()); ok && link > 0 {
			out[link] = append(out[link], ip)
		}
	}
	for _, r := range rs {
		add(r.LinkIndex, r.Gw)
		for _, hop := range r.MultiPath {
			add(hop.LinkIndex, hop.Gw)
		}
	}
	return out, nil
}

func host(linkIndex int, ip netip.Addr, label string, lifetime uint32) *netlink.Addr {
	return &netlink.Addr{
		IPNet:       &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)},
		Label:       label,
		LinkIndex:   linkIndex,
		ValidLft:    int(lifetime),
		PreferedLft: int(lifetime),
	}
}

func (k *linuxKernel) AddAddr(linkIndex int, ip netip.Addr, label string, lifetime uint32) error {
	return k.nl.AddrAdd(nil, host(linkIndex, ip, label, lifetime))
}

// RefreshAddr replaces the address: on an existing IPv4 address the kernel changes only
// the lifetimes (and metric and protocol), never the label.
func (k *linuxKernel) RefreshAddr(linkIndex int, ip netip.Addr, label string, lifetime uint32) error {
	return k.nl.AddrReplace(nil, host(linkIndex, ip, label, lifetime))
}

// DelAddr names the label, so the kernel deletes only an address that carries it. An
// address already gone (its lifetime ended) is not an error.
func (k *linuxKernel) DelAddr(linkIndex int, ip netip.Addr, label string) error {
	err := k.nl.AddrDel(nil, host(linkIndex, ip, label, 0))
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		return nil
	}
	return err
}

// dropAll is a socket filter that receives nothing: the ARP socket only sends.
var dropAll = func() []bpf.RawInstruction {
	f, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		panic(err) // a constant program
	}
	return f
}()

// OpenARP opens a raw AF_PACKET socket on the link for ARP frames. arp.Client builds
// the Ethernet header and sends to the address it is given, so a gratuitous reply can
// carry our MAC as its target and still go to broadcast.
func (k *linuxKernel) OpenARP(l link) (arpConn, error) {
	var c *arp.Client
	err := k.inNetns(func() error {
		ifi, err := net.InterfaceByIndex(l.Index)
		if err != nil {
			return err
		}
		conn, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: dropAll})
		if err != nil {
			return err
		}
		if c, err = arp.New(ifi, conn); err != nil {
			_ = conn.Close()
			return err
		}
		return nil
	})
	return c, err
}

// inNetns runs f on a thread in k.ns. If the thread cannot go back to its own namespace
// it stays locked, so that it ends with its goroutine rather than run another one in the
// wrong namespace.
func (k *linuxKernel) inNetns(f func() error) error {
	if !k.ns.IsOpen() {
		return f()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("getting the thread's network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(k.ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace: %w", err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("returning to the thread's network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}
