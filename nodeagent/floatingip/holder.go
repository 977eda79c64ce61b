package floatingip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// Interface is a node interface as the NetworkGatewayNode reports it.
type Interface struct {
	Name string
	MAC  string
	// Subnets are the masked IPv4 subnets of its addresses, excluding floating IPs we hold.
	Subnets []netip.Prefix
	// Routers are the next hops of the node's routes through it, sorted: addresses in use
	// on its segment.
	Routers []netip.Addr
}

// Options configure a Holder. The zero value is ready to use.
type Options struct {
	// GARPSchedule is when to announce a newly added floating IP, as delays after the add;
	// each announcement is a gratuitous ARP request and a gratuitous ARP reply. Nil means
	// 0, 50ms and 250ms; an empty, non-nil schedule sends none.
	GARPSchedule []time.Duration
	// Interfaces are glob patterns (path.Match) for the names of the interfaces that may
	// hold floating IPs, such as "eth*"; none means any interface.
	Interfaces []string
}

var defaultGARPSchedule = []time.Duration{0, 50 * time.Millisecond, 250 * time.Millisecond}

// Validate reports options New cannot use as given.
func (o Options) Validate() error {
	var errs []error
	for _, p := range o.Interfaces {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("interface pattern %q: %w; use path.Match syntax, such as \"eth*\"", p, err))
		}
	}
	for _, d := range o.GARPSchedule {
		if d < 0 || d > time.Minute {
			errs = append(errs, fmt.Errorf("GARP delay %v is outside 0 to 1m; announce within a second of the add", d))
		}
	}
	return errors.Join(errs...)
}

// Stats count gratuitous ARP frames since New, for the agent's metrics.
type Stats struct {
	GARPSent   uint64
	GARPFailed uint64
}

// Holder holds a node's floating IPs. Its methods are safe to call concurrently.
type Holder struct {
	k        kernel
	patterns []string
	schedule []time.Duration

	// mu serialises changes to the kernel, and guards bursts: the cancel of each
	// announcement under way, by IP.
	mu     sync.Mutex
	bursts map[netip.Addr]context.CancelFunc
	wg     sync.WaitGroup

	sent, failed atomic.Uint64
}

// New returns a Holder for the node's network namespace. Invalid interface patterns
// (see Options.Validate) match nothing.
func New(opts Options) *Holder {
	return newHolder(opts, newKernel())
}

func newHolder(opts Options, k kernel) *Holder {
	schedule := opts.GARPSchedule
	if schedule == nil {
		schedule = defaultGARPSchedule
	}
	return &Holder{
		k:        k,
		patterns: append([]string(nil), opts.Interfaces...),
		schedule: append([]time.Duration(nil), schedule...),
		bursts:   map[netip.Addr]context.CancelFunc{},
	}
}

// Reconcile makes the node hold exactly want (ip → remaining grant lifetime), each address
// with valid_lft and preferred_lft the lifetime rounded up to whole seconds, refreshing
// the lifetimes of addresses already held, removing floating IPs we hold that are not in
// want, and announcing every newly added one with gratuitous ARP (in the background). An
// IP it cannot place is an error naming the IP; the others are reconciled all the same.
func (h *Holder) Reconcile(want map[netip.Addr]time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	links, addrs, err := h.state()
	if err != nil {
		return err
	}
	p := makePlan(links, addrs, want, h.patterns)
	errs := p.errs
	// Removals first: an IP moving between interfaces is never on both, and a released
	// IP is gone before anything else can fail.
	errs = append(errs, h.remove(p.remove)...)
	for _, o := range p.refresh {
		if err := h.k.RefreshAddr(o.link.Index, o.ip, o.label, o.lifetime); err != nil {
			errs = append(errs, fmt.Errorf("refreshing the lifetime of floating IP %s on %s: %w; the kernel drops it when the old lifetime ends", o.ip, o.link.Name, err))
			continue
		}
		klog.V(4).InfoS("Refreshed floating IP", "ip", o.ip, "interface", o.link.Name, "lifetimeSeconds", o.lifetime)
	}
	for _, o := range p.add {
		if err := h.k.AddAddr(o.link.Index, o.ip, o.label, o.lifetime); err != nil {
			errs = append(errs, fmt.Errorf("adding floating IP %s/32 to %s: %w; check that the agent has CAP_NET_ADMIN in the host network namespace", o.ip, o.link.Name, err))
			continue
		}
		h.announce(o)
		klog.InfoS("Added floating IP", "ip", o.ip, "interface", o.link.Name, "lifetimeSeconds", o.lifetime)
	}
	return errors.Join(errs...)
}

// Held is what the kernel says we hold now, sorted.
func (h *Holder) Held() ([]netip.Addr, error) {
	addrs, err := h.k.Addrs()
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	return heldIPs(addrs), nil
}

// Interfaces are the up, non-loopback, non-tunnel interfaces with IPv4 subnets that may
// hold floating IPs, sorted by name.
func (h *Holder) Interfaces() ([]Interface, error) {
	links, addrs, err := h.state()
	if err != nil {
		return nil, err
	}
	routers, err := h.k.Routers()
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	var out []Interface
	for _, c := range candidates(links, addrs, h.patterns) {
		rs := slices.Clone(routers[c.link.Index])
		slices.SortFunc(rs, netip.Addr.Compare)
		out = append(out, Interface{Name: c.link.Name, MAC: c.link.MAC.String(), Subnets: c.subnets, Routers: slices.Compact(rs)})
	}
	return out, nil
}

// ReleaseAll drops every floating IP we hold, on any interface: for uninstalling.
func (h *Holder) ReleaseAll() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	links, addrs, err := h.state()
	if err != nil {
		return err
	}
	return errors.Join(h.remove(makePlan(links, addrs, nil, h.patterns).remove)...)
}

// Stats are the GARP counters.
func (h *Holder) Stats() Stats {
	return Stats{GARPSent: h.sent.Load(), GARPFailed: h.failed.Load()}
}

func (h *Holder) state() ([]link, []address, error) {
	links, err := h.k.Links()
	if err != nil {
		return nil, nil, fmt.Errorf("listing interfaces: %w", err)
	}
	addrs, err := h.k.Addrs()
	if err != nil {
		return nil, nil, fmt.Errorf("listing addresses: %w", err)
	}
	return links, addrs, nil
}

// remove deletes addresses, stopping their announcements first. h.mu is held.
func (h *Holder) remove(ops []op) []error {
	var errs []error
	for _, o := range ops {
		if cancel, ok := h.bursts[o.ip]; ok {
			cancel()
			delete(h.bursts, o.ip)
		}
		if err := h.k.DelAddr(o.link.Index, o.ip, o.label); err != nil {
			errs = append(errs, fmt.Errorf("removing floating IP %s from %s: %w; it stays until its lifetime ends, check that the agent has CAP_NET_ADMIN", o.ip, o.link.Name, err))
			continue
		}
		klog.InfoS("Removed floating IP", "ip", o.ip, "interface", o.link.Name)
	}
	return errs
}
