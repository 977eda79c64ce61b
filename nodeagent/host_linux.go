package nodeagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
)

// linuxHost is the node's network outside BPF: the rule and table that lead steered
// packets to an uplink, and the nft table.
type linuxHost struct{}

var _ host = linuxHost{}

var steerMask uint32 = markClassMask

// SteerNexthop is the next hop of table 2640's route: a link-local address that no host
// has, with a permanent neighbour entry, so that the kernel sends a steered packet out
// of the uplink without asking ARP for its external destination. egw_uplink_out then
// addresses the frame to its egress IP's virtual MAC. steerNexthopMAC is the virtual MAC
// of 0.0.0.0, which no node holds: a frame that left with it would be dropped by all.
var (
	SteerNexthop    = netip.MustParseAddr("169.254.88.2")
	steerNexthopMAC = routing.VirtualMAC(netip.IPv4Unspecified())
)

// EnsureSteering routes steered packets (by mark, table 2640, and 2642 for the routed
// way) out of uplink, with a blackhole behind, so that a missing route drops rather than leaks; sets rp_filter to
// loose on the uplinks (steered packets from other nodes arrive there with pod IPs that
// the node may route through an overlay device).
func (h linuxHost) EnsureSteering(uplink int, uplinks []int) error {
	// The rules first: with the blackhole, a steered packet drops until the route is in.
	for _, r := range steerRules() {
		if err := ensureRule(r); err != nil {
			return err
		}
	}
	var errs []error
	for _, i := range uplinks {
		if err := looseRPFilter(i); err != nil {
			errs = append(errs, err)
		}
	}
	neighs, err := netlink.NeighList(0, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("listing neighbours: %w", err)
	}
	for _, n := range neighs {
		if n.LinkIndex != uplink && n.IP.Equal(SteerNexthop.AsSlice()) {
			if err := netlink.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("deleting the steering neighbour from interface %d: %w", n.LinkIndex, err))
			}
		}
	}
	neigh := &netlink.Neigh{LinkIndex: uplink, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: SteerNexthop.AsSlice(), HardwareAddr: steerNexthopMAC}
	if err := netlink.NeighSet(neigh); err != nil {
		return fmt.Errorf("adding neighbour %s on interface %d: %w", SteerNexthop, uplink, err)
	}
	route := &netlink.Route{Table: SteerTable, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)},
		LinkIndex: uplink, Gw: SteerNexthop.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("routing table %d to interface %d: %w", SteerTable, uplink, err)
	}
	// The routed way: the same route, with the MTU the outer header leaves. A packet too
	// big for it gets frag-needed from this node (or is fragmented, without DF) before
	// egw_route_out wraps it, so the wrapped packet fits the uplink.
	l, err := netlink.LinkByIndex(uplink)
	if err != nil {
		return fmt.Errorf("finding interface %d: %w", uplink, err)
	}
	routed := *route
	routed.Table, routed.MTU = RouteTable, l.Attrs().MTU-routedOverhead
	if err := netlink.RouteReplace(&routed); err != nil {
		return fmt.Errorf("routing table %d to interface %d: %w", RouteTable, uplink, err)
	}
	return errors.Join(errs...)
}

// RouteTo is the kernel's route to ip, as egw_route_out sends wrapped packets by it: the
// interface and the source address. False if the node has no unicast route to it.
func (h linuxHost) RouteTo(ip netip.Addr) (bpf.Routed, bool) {
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil || len(routes) == 0 || routes[0].Type != unix.RTN_UNICAST {
		return bpf.Routed{}, false
	}
	src, ok := netip.AddrFromSlice(routes[0].Src.To4())
	if !ok || routes[0].LinkIndex <= 0 {
		return bpf.Routed{}, false
	}
	return bpf.Routed{Ifindex: routes[0].LinkIndex, Src: src}, true
}

// looseRPFilter sets rp_filter to loose (2) on an interface that has it strict. Loose,
// not off: the kernel applies the larger of "all" and the device's value.
func looseRPFilter(ifindex int) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return fmt.Errorf("finding interface %d: %w", ifindex, err)
	}
	path := "/proc/sys/net/ipv4/conf/" + l.Attrs().Name + "/rp_filter"
	if v, err := os.ReadFile(path); err == nil && string(bytes.TrimSpace(v)) != "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("2"), 0o644); err != nil {
		return fmt.Errorf("setting rp_filter to loose on %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// steerRules send steered packets to the steering table, and those steered the routed
// way to the routed table, and drop them if that table has no route.
func steerRules() []*netlink.Rule {
	var rules []*netlink.Rule
	for _, class := range []struct{ table, mark int }{{SteerTable, markSteer}, {RouteTable, markRoute}} {
		lookup, blackhole := netlink.NewRule(), netlink.NewRule()
		lookup.Priority, lookup.Table = class.table, class.table
		blackhole.Priority, blackhole.Type = class.table+1, unix.RTN_BLACKHOLE
		for _, r := range []*netlink.Rule{lookup, blackhole} {
			r.Family, r.Mark, r.Mask = unix.AF_INET, uint32(class.mark), &steerMask
		}
		rules = append(rules, lookup, blackhole)
	}
	return rules
}

func ensureRule(want *netlink.Rule) error {
	rules, err := netlink.RuleList(unix.AF_INET)
	if err != nil {
		return fmt.Errorf("listing routing rules: %w", err)
	}
	for _, r := range rules {
		if r.Priority == want.Priority && r.Mark == want.Mark && r.Table == want.Table {
			return nil
		}
	}
	if err := netlink.RuleAdd(want); err != nil {
		return fmt.Errorf("adding routing rule %d: %w", want.Priority, err)
	}
	return nil
}

// ApplyNftables replaces the table in one nft transaction.
func (h linuxHost) ApplyNftables(n nftState) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = bytes.NewBufferString(n.render())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// ListNftables lists the table stateless (-s), so that counters do not make two listings
// of the same table differ.
func (h linuxHost) ListNftables() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nft", "-s", "list", "table", "ip", nftTable).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("No such file")) {
			return "", nil
		}
		return "", fmt.Errorf("nft list table ip %s: %w: %s", nftTable, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// PodLink finds the interface that carries the pod's packets into the node: the pod's
// veth, whatever the CNI named it, through which the kernel routes the pod's IP. Where it
// routes the IP to a bridge (the bridge plugin's cni0, Flannel's), it is the bridge's
// port that leads to the pod: the bridge's neighbour entry gives the pod's MAC, and the
// bridge's forwarding database the port it was learnt on. The program goes on that port,
// ahead of the bridge, so that it marks a packet before br_netfilter's conntrack sees it,
// and so that each pod's port lets through only that pod's sources. A pod whose MAC the
// bridge has not learnt yet is asked for it (one empty datagram, which makes the node ask
// ARP) and found on a later pass; meanwhile the nft backstop drops its selected packets.
func (h linuxHost) PodLink(ip netip.Addr) (int, bool) {
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil || len(routes) == 0 || routes[0].Gw != nil {
		return 0, false // Not a local pod: it is routed via another node.
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return 0, false
	}
	if l.Type() != "bridge" {
		return routes[0].LinkIndex, true
	}
	if port, ok := bridgePort(l.Attrs().Index, ip); ok {
		return port, true
	}
	solicit(ip)
	return 0, false
}

// bridgePort is the port of bridge behind which ip's MAC was learnt.
func bridgePort(bridge int, ip netip.Addr) (int, bool) {
	neighs, err := netlink.NeighList(bridge, unix.AF_INET)
	if err != nil {
		return 0, false
	}
	var mac net.HardwareAddr
	for _, n := range neighs {
		if n.IP.Equal(ip.AsSlice()) && len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
			mac = n.HardwareAddr
		}
	}
	if mac == nil {
		return 0, false
	}
	fdb, err := netlink.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return 0, false
	}
	for _, f := range fdb {
		if f.MasterIndex == bridge && f.LinkIndex != bridge && bytes.Equal(f.HardwareAddr, mac) {
			return f.LinkIndex, true
		}
	}
	return 0, false
}

// solicit sends ip one empty UDP datagram (to the discard port), so that the node asks
// ARP for it and the bridge learns its port.
func solicit(ip netip.Addr) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 9)))
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write(nil)
}

// Uplink finds the interface's index and MAC.
func (h linuxHost) Uplink(name string) (bpf.Uplink, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return bpf.Uplink{}, err
	}
	return bpf.Uplink{Ifindex: ifi.Index, MAC: ifi.HardwareAddr}, nil
}

// SNATConnections counts conntrack entries whose reply goes to one of our egress IPs.
func (h linuxHost) SNATConnections() (map[netip.Addr]int, error) {
	flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing conntrack: %w", err)
	}
	out := map[netip.Addr]int{}
	for _, f := range flows {
		if f.Zone != ctZone {
			continue
		}
		orig, _ := netip.AddrFromSlice(f.Forward.SrcIP.To4())
		reply, _ := netip.AddrFromSlice(f.Reverse.DstIP.To4())
		if orig != reply && reply.IsValid() {
			out[reply]++
		}
	}
	return out, nil
}

// DeleteFlows deletes the IPv4 conntrack entries stale picks, in every zone.
func (h linuxHost) DeleteFlows(stale func(Flow) bool) (int, error) {
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.FAMILY_V4, flowFilter(stale))
	return int(n), err
}

// flowFilter is a netlink conntrack filter that asks stale.
type flowFilter func(Flow) bool

func (f flowFilter) MatchConntrackFlow(c *netlink.ConntrackFlow) bool {
	src, _ := netip.AddrFromSlice(c.Forward.SrcIP.To4())
	dst, _ := netip.AddrFromSlice(c.Forward.DstIP.To4())
	reply, _ := netip.AddrFromSlice(c.Reverse.DstIP.To4())
	return src.IsValid() && f(Flow{Zone: c.Zone, Src: src, Dst: dst, ReplyDst: reply})
}

// RemoveHost undoes EnsureSteering and the nft table: the agent's uninstall. It leaves
// rp_filter as it is.
func RemoveHost() error {
	var errs []error
	if out, err := exec.Command("nft", "delete", "table", "ip", nftTable).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("No such file")) {
		errs = append(errs, fmt.Errorf("deleting nft table: %w: %s", err, out))
	}
	for _, r := range steerRules() {
		if err := netlink.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting routing rule %d: %w", r.Priority, err))
		}
	}
	for _, table := range []int{SteerTable, RouteTable} {
		route := &netlink.Route{Table: table, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}
		if err := netlink.RouteDel(route); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting table %d's route: %w", table, err))
		}
	}
	if neighs, err := netlink.NeighList(0, unix.AF_INET); err == nil {
		for _, n := range neighs {
			if n.IP.Equal(SteerNexthop.AsSlice()) {
				if err := netlink.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("deleting the steering neighbour: %w", err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
