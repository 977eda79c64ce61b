package floatingip

import (
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"golang.org/x/sys/unix"
)

// fakeKernel keeps addresses the way the kernel does, closely enough for the logic:
// a /32 is found by link and IP, and a delete that names a label must match it.
type fakeKernel struct {
	mu      sync.Mutex
	links   []link
	addrs   []fakeAddr
	routers map[int][]netip.Addr
	openErr error
	opened  int
	sent    []sentFrame
}

type fakeAddr struct {
	address
	lifetime uint32 // 0: forever
}

type sentFrame struct {
	at   time.Time
	link string
	dst  net.HardwareAddr
	p    arp.Packet
}

var _ kernel = &fakeKernel{}

func fakeAddrs(as []address) []fakeAddr {
	var out []fakeAddr
	for _, a := range as {
		out = append(out, fakeAddr{address: a})
	}
	return out
}

func (k *fakeKernel) Links() ([]link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.links), nil
}

func (k *fakeKernel) Routers() (map[int][]netip.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.routers), nil
}

func (k *fakeKernel) Addrs() ([]address, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []address
	for _, a := range k.addrs {
		out = append(out, a.address)
	}
	return out, nil
}

func (k *fakeKernel) find(linkIndex int, ip netip.Addr) int {
	return slices.IndexFunc(k.addrs, func(a fakeAddr) bool {
		return a.LinkIndex == linkIndex && a.Prefix == netip.PrefixFrom(ip, 32)
	})
}

func (k *fakeKernel) AddAddr(linkIndex int, ip netip.Addr, label string, lifetime uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.find(linkIndex, ip) >= 0 {
		return unix.EEXIST
	}
	k.addrs = append(k.addrs, fakeAddr{address{LinkIndex: linkIndex, Prefix: netip.PrefixFrom(ip, 32), Label: label}, lifetime})
	return nil
}

func (k *fakeKernel) RefreshAddr(linkIndex int, ip netip.Addr, label string, lifetime uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(linkIndex, ip)
	if i < 0 {
		k.addrs = append(k.addrs, fakeAddr{address{LinkIndex: linkIndex, Prefix: netip.PrefixFrom(ip, 32), Label: label}, lifetime})
		return nil
	}
	k.addrs[i].lifetime = lifetime
	return nil
}

func (k *fakeKernel) DelAddr(linkIndex int, ip netip.Addr, label string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(linkIndex, ip)
	if i < 0 || k.addrs[i].Label != label {
		return nil
	}
	k.addrs = slices.Delete(k.addrs, i, i+1)
	return nil
}

func (k *fakeKernel) OpenARP(l link) (arpConn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.openErr != nil {
		return nil, k.openErr
	}
	k.opened++
	return &fakeConn{k: k, link: l.Name}, nil
}

func (k *fakeKernel) frames() []sentFrame {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.sent)
}

type fakeConn struct {
	k      *fakeKernel
	link   string
	closed bool
}

func (c *fakeConn) WriteTo(p *arp.Packet, dst net.HardwareAddr) error {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	if c.closed {
		return errors.New("write on a closed socket")
	}
	c.k.sent = append(c.k.sent, sentFrame{at: time.Now(), link: c.link, dst: dst, p: *p})
	return nil
}

func (c *fakeConn) Close() error {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	c.closed = true
	return nil
}
