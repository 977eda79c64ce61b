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
)

// linuxHost is the node's network outside BPF: the VXLAN device, the rule and table that
// lead steered packets to it, and the nft table.
type linuxHost struct {
	tunnel string
	port   int
}

var steerMask uint32 = markClassMask

// vxlanOverhead is what VXLAN adds to an IPv4 packet: outer IPv4, UDP, VXLAN, Ethernet.
const vxlanOverhead = 20 + 8 + 8 + 14

// EnsureTunnel creates egw0 (VXLAN in external mode: the BPF program sets each packet's
// outer destination; every node's egw0 has its own random MAC, as VXLAN drops frames
// from its own address as loops, and the gateway's BPF program takes the decapsulated
// frame as addressed to it), turns ARP off and rp_filter to loose on it (decapsulated packets
// carry pod IPs of other nodes), and routes marked packets into it, with a blackhole behind so that
// a missing device drops rather than leaks.
func (h linuxHost) EnsureTunnel() (int, error) {
	link, err := netlink.LinkByName(h.tunnel)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return 0, fmt.Errorf("looking up %s: %w", h.tunnel, err)
		}
		dev := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: h.tunnel, MTU: uplinkMTU() - vxlanOverhead},
			FlowBased: true, Port: h.port, Learning: false,
		}
		if err := netlink.LinkAdd(dev); err != nil {
			return 0, fmt.Errorf("creating VXLAN device %s on UDP port %d: %w", h.tunnel, h.port, err)
		}
		if link, err = netlink.LinkByName(h.tunnel); err != nil {
			return 0, err
		}
	}
	if vx, ok := link.(*netlink.Vxlan); !ok || !vx.FlowBased || vx.Port != h.port {
		return 0, fmt.Errorf("%s exists but is not an external-mode VXLAN device on port %d: delete it (ip link del %s) or pick another --tunnel-name", h.tunnel, h.port, h.tunnel)
	}
	if err := netlink.LinkSetARPOff(link); err != nil {
		return 0, fmt.Errorf("turning ARP off on %s: %w", h.tunnel, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return 0, fmt.Errorf("setting %s up: %w", h.tunnel, err)
	}
	if err := ensureTunnelAddr(link); err != nil {
		return 0, err
	}
	// Loose, not off: the kernel applies the larger of "all" and the device's value, and
	// many nodes set all to strict, which would drop every decapsulated packet.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+h.tunnel+"/rp_filter", []byte("2"), 0o644); err != nil {
		return 0, fmt.Errorf("setting rp_filter to loose on %s: %w", h.tunnel, err)
	}
	route := &netlink.Route{Table: TunnelTable, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)},
		LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteReplace(route); err != nil {
		return 0, fmt.Errorf("routing table %d to %s: %w", TunnelTable, h.tunnel, err)
	}
	for _, r := range steerRules() {
		if err := ensureRule(r); err != nil {
			return 0, err
		}
	}
	return link.Attrs().Index, nil
}

// TunnelAddr is egw0's own address. Nothing is sent from it; it exists because the
// kernel's reverse-path filter refuses every packet that arrives on a device without an
// IPv4 address, and decapsulated packets arrive on egw0.
var TunnelAddr = netip.MustParseAddr("169.254.88.1")

func ensureTunnelAddr(link netlink.Link) error {
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: TunnelAddr.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: unix.RT_SCOPE_LINK}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", TunnelAddr, link.Attrs().Name, err)
	}
	return nil
}

// steerRules send steered packets to the tunnel's table, and drop them if that table
// has no route.
func steerRules() []*netlink.Rule {
	lookup, blackhole := netlink.NewRule(), netlink.NewRule()
	lookup.Priority, lookup.Table = TunnelTable, TunnelTable
	blackhole.Priority, blackhole.Type = TunnelTable+1, unix.RTN_BLACKHOLE
	for _, r := range []*netlink.Rule{lookup, blackhole} {
		r.Family, r.Mark, r.Mask = unix.AF_INET, markSteer, &steerMask
	}
	return []*netlink.Rule{lookup, blackhole}
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

// uplinkMTU is the MTU of the interface the default route uses, or 1500.
func uplinkMTU() int {
	routes, err := netlink.RouteGet(net.IPv4(203, 0, 113, 1))
	if err != nil || len(routes) == 0 {
		return 1500
	}
	link, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return 1500
	}
	return link.Attrs().MTU
}

// ApplyNftables replaces the table in one nft transaction.
func (h linuxHost) ApplyNftables(n nftState) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = bytes.NewBufferString(n.render(h.tunnel, h.port))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// PodLink asks the kernel which interface it routes the pod's IP through: the pod's veth,
// whatever the CNI named it.
func (h linuxHost) PodLink(ip netip.Addr) (int, bool) {
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil || len(routes) == 0 || routes[0].Gw != nil {
		return 0, false // Not a local pod: it is routed via another node.
	}
	return routes[0].LinkIndex, true
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

// RemoveHost undoes EnsureTunnel and the nft table: the agent's uninstall.
func RemoveHost(tunnel string) error {
	var errs []error
	if out, err := exec.Command("nft", "delete", "table", "ip", nftTable).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("No such file")) {
		errs = append(errs, fmt.Errorf("deleting nft table: %w: %s", err, out))
	}
	for _, r := range steerRules() {
		if err := netlink.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting routing rule %d: %w", r.Priority, err))
		}
	}
	if link, err := netlink.LinkByName(tunnel); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("deleting %s: %w", tunnel, err))
		}
	}
	return errors.Join(errs...)
}
