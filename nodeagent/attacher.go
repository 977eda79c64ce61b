package nodeagent

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
)

// attacher puts the programs where packets pass: the classifier on every local pod's veth,
// the uplink programs on every interface that can hold floating IPs, and the routing rule
// and table that lead steered packets out of an uplink. It remembers what it attached, so
// that a pass asks the kernel again only for what changed.
type attacher struct {
	dp     attachments
	host   hostRouting
	ifaces interfaceLister
	// chosen: --interfaces names the interfaces that may hold floating IPs; without it,
	// they are the one with the node's IP.
	chosen bool
	now    func() time.Duration
	// resync is how often the steering is written again though nothing changed, to
	// repair what someone else changed.
	resync time.Duration

	pods      map[int][]netip.Addr      // pod ifindex → the pod IPs it may send from, sorted
	uplinks   map[string]int            // interface name → ifindex its uplink programs are attached to
	steering  []int                     // the uplinks EnsureSteering was last given
	routed    map[netip.Addr]bpf.Routed // what egw_routed holds, as last written; nil: unknown
	foreign   map[netip.Addr]string     // the pods with another program on their interface, at the last pass
	steeredAt time.Duration             // when, on now's clock
}

// interfaces are those that can hold floating IPs: they get the uplink programs and carry
// steered packets (their rp_filter is loosened), they bound what is staged, and they are
// reported, so placement uses their subnets. With no --interfaces, they are those on a
// subnet of the node's IPs (nodeIPs): a bridge's pod CIDR is no uplink.
func (at *attacher) interfaces(nodeIPs []netip.Addr) ([]Interface, error) {
	ifaces, err := at.ifaces.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	if at.chosen {
		return ifaces, nil
	}
	return holdingNodeIP(ifaces, nodeIPs)
}

// holdingNodeIP are the interfaces with a subnet that contains one of the node's IPs.
func holdingNodeIP(ifaces []Interface, nodeIPs []netip.Addr) ([]Interface, error) {
	var out []Interface
	for _, i := range ifaces {
		if slices.ContainsFunc(i.Subnets, func(p netip.Prefix) bool { return slices.ContainsFunc(nodeIPs, p.Contains) }) {
			out = append(out, i)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no interface has a subnet with the node's IPs %v (the Node's InternalIP addresses): name the interfaces that may hold floating IPs with --interfaces", nodeIPs)
	}
	return out, nil
}

// attachUplinks puts the uplink programs on every interface that can hold floating IPs,
// before any IP is added there (they guard its ARP); tells the dataplane which of them
// reaches each of the gateways' floating IPs on its subnet (egressIPs: those on a subnet
// of this node); and routes steered packets out of the first one that reaches any, or
// the first one if none does (egw_uplink_out moves a packet to its IP's uplink).
func (at *attacher) attachUplinks(ifaces []Interface, egressIPs []netip.Addr) error {
	if at.uplinks == nil {
		at.uplinks = map[string]int{}
	}
	var errs []error
	var indexes []int
	steer := -1
	uplinks := map[netip.Addr]bpf.Uplink{}
	for _, i := range ifaces {
		up, err := at.host.Uplink(i.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("finding interface %s: %w", i.Name, err))
			continue
		}
		reaches := false
		for _, ip := range egressIPs {
			if _, done := uplinks[ip]; !done && routing.OnSegment(i.Subnets, ip) {
				uplinks[ip] = up
				reaches = true
			}
		}
		if at.uplinks[i.Name] != up.Ifindex {
			if err := at.dp.AttachUplink(up.Ifindex); err != nil {
				errs = append(errs, err)
				continue
			}
			at.uplinks[i.Name] = up.Ifindex
		}
		if steer < 0 && reaches {
			steer = len(indexes)
		}
		indexes = append(indexes, up.Ifindex)
	}
	if err := at.dp.SetUplinks(uplinks); err != nil {
		errs = append(errs, err)
	}
	if len(indexes) == 0 {
		return errors.Join(append(errs, errors.New("no interface can hold floating IPs, so steered packets have no way out and are dropped"))...)
	}
	if steer > 0 {
		indexes[0], indexes[steer] = indexes[steer], indexes[0]
	}
	// Passes run on every renewal: the kernel is asked again when the uplinks change, and
	// once per resync interval, to repair what someone else changed.
	if !slices.Equal(indexes, at.steering) || at.now()-at.steeredAt >= at.resync {
		if err := at.host.EnsureSteering(indexes[0], indexes); err != nil {
			at.steering = nil
			return errors.Join(append(errs, fmt.Errorf("routing steered packets: %w", err))...)
		}
		at.steering, at.steeredAt = indexes, at.now()
	}
	return errors.Join(errs...)
}

// attachPods puts the classifier on every local pod's veth, letting it send from the
// pod's own IPs only, and takes it off veths whose pod is gone. A pod whose veth is not
// found yet is caught by the nft backstop.
func (at *attacher) attachPods(t routing.Table) error {
	if at.pods == nil {
		at.pods = map[int][]netip.Addr{}
	}
	want := map[int][]netip.Addr{}
	for ip := range t.Pods {
		if ifindex, ok := at.host.PodLink(ip); ok {
			want[ifindex] = append(want[ifindex], ip)
		}
	}
	var errs []error
	for _, ifindex := range slices.Sorted(maps.Keys(want)) {
		ips := want[ifindex]
		slices.SortFunc(ips, netip.Addr.Compare)
		if slices.Equal(at.pods[ifindex], ips) {
			continue
		}
		// The dataplane writes the sources before it attaches: the pod's first packet
		// finds them.
		if err := at.dp.AttachPod(ifindex, ips); err != nil {
			errs = append(errs, fmt.Errorf("attaching to the veth of pod %s: %w", ips[0], err))
			delete(at.pods, ifindex) // what the kernel holds is unknown: write it again
			continue
		}
		at.pods[ifindex] = ips
	}
	current, err := at.dp.AttachedPods()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, ifindex := range current {
		if _, ok := want[ifindex]; !ok {
			if err := at.dp.DetachPod(ifindex); err != nil {
				errs = append(errs, err)
			}
			delete(at.pods, ifindex)
		}
	}
	return errors.Join(errs...)
}
