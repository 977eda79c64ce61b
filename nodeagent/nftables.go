package nodeagent

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// Marks, as docs/dataplane.md lays them out: the upper 16 bits of skb->mark are ours.
const (
	markClassMask  = 0xF0000000
	markClassified = 0xC0000000
	markSteer      = 0xE0000000
	markSNAT       = 0xD0000000
	// markRoute steers the routed way, wrapped in IPv4 (egw_route_out). Its class shares
	// markSteer's upper three bits, so one masked match keeps the pod's IP for both.
	markRoute = 0xF0000000
	markToGW  = markSteer & markRoute
	// ctZone keeps the gateway's view of steered traffic apart from the source node's,
	// for the gateway's own pods, whose packets cross conntrack twice.
	ctZone = 2640
	// SteerTable is the routing table steered packets use; its rule has the same
	// preference.
	SteerTable = 2640
	// RouteTable is the table of packets steered the routed way: the same route with an
	// MTU that leaves room for the outer header. Its rule has the same preference.
	RouteTable = 2642
	// routedOverhead is the outer IPv4 header of the routed way.
	routedOverhead = 20
	nftTable       = "egressgw"
)

// nftWriter writes the agent's nft table when it changes: a rewrite costs 20–190 ms on a
// busy node, and most passes change nothing in it. Once per resync interval it also reads
// the kernel's table back: after `nft flush ruleset` or a firewall reload the identity
// SNAT, the SNAT map and the guard are gone while the agent's own last write says they
// are there, and the gateway's packets would leave with the node IP.
type nftWriter struct {
	host nftApplier
	node string
	m    *metrics
	// now and resync pace the read-back; a zero resync reads the kernel on every pass.
	now    func() time.Duration
	resync time.Duration
	last   string // the table last written
	// kernel is the kernel's listing of the table just after the last write: a later
	// listing that differs means someone else changed or removed it.
	kernel    string
	checkedAt time.Duration
}

// apply writes the table if it changed, or if the kernel's copy no longer matches.
func (w *nftWriter) apply(n nftState) error {
	text := n.render()
	if text == w.last {
		drifted, err := w.drifted()
		if err != nil || !drifted {
			return err
		}
		klog.InfoS("The kernel's nft table differs from the agent's last write: someone flushed or edited it; writing it again", "node", w.node, "table", nftTable)
		w.m.nftRepairs.Inc()
	}
	start := time.Now()
	if err := w.host.ApplyNftables(n); err != nil {
		w.last = "" // Unknown now: write again on the next pass.
		return fmt.Errorf("writing the nft table: %w", err)
	}
	w.m.nftSeconds.Observe(time.Since(start).Seconds())
	klog.V(3).InfoS("Wrote the nft table", "node", w.node, "took", time.Since(start), "egressIPs", len(n.SNAT), "destinations", len(n.Destinations))
	w.last = text
	kernel, err := w.host.ListNftables()
	if err != nil {
		return fmt.Errorf("reading back the nft table: %w", err)
	}
	w.kernel, w.checkedAt = kernel, w.clock()
	return nil
}

// drifted reads the kernel's table, about once per resync interval, and says whether
// it differs from what the kernel held just after the agent's last write.
func (w *nftWriter) drifted() (bool, error) {
	// A tenth of slack: the resync ticker's pass reads the kernel, though it comes a
	// little less than an interval after the last read, which came a little after its tick.
	if now := w.clock(); w.resync > 0 && now-w.checkedAt < w.resync-w.resync/10 {
		return false, nil
	}
	kernel, err := w.host.ListNftables()
	if err != nil {
		return false, fmt.Errorf("reading the kernel's nft table: %w", err)
	}
	w.checkedAt = w.clock()
	return !sameListing(kernel, w.kernel), nil
}

func (w *nftWriter) clock() time.Duration {
	if w.now == nil {
		return 0
	}
	return w.now()
}

// sameListing compares two listings of the table by their lines, blanks trimmed. An
// empty listing (the table is gone) never matches: the agent's table is never empty.
func sameListing(a, b string) bool {
	la, lb := listingLines(a), listingLines(b)
	return len(la) > 0 && slices.Equal(la, lb)
}

func listingLines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// snatMap is the union of the maps: the nft table's egress IPs by SNAT id.
func snatMap(ms ...map[uint32]netip.Addr) map[uint32]netip.Addr {
	out := map[uint32]netip.Addr{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// render writes the agent's nft table. Applying it replaces the previous one atomically.
func (n nftState) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s\ndelete table ip %s\ntable ip %s {\n", nftTable, nftTable, nftTable)
	set(&b, "pod_cidrs", n.PodCIDRs)
	set(&b, "cluster_cidrs", n.Cluster)
	set(&b, "policy_destinations", n.Destinations)
	fmt.Fprintf(&b, "\tset egress_ips {\n\t\ttype ipv4_addr\n")
	if len(n.SNAT) > 0 {
		ips := slices.Collect(maps.Values(n.SNAT))
		slices.SortFunc(ips, netip.Addr.Compare)
		fmt.Fprintf(&b, "\t\telements = { %s }\n", join(ips))
	}
	fmt.Fprintf(&b, "\t}\n\tmap snat_ips {\n\t\ttype mark : ipv4_addr\n")
	if len(n.SNAT) > 0 {
		var elems []string
		for _, id := range slices.Sorted(maps.Keys(n.SNAT)) {
			elems = append(elems, fmt.Sprintf("0x%08x : %s", markSNAT|id<<16, n.SNAT[id]))
		}
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
	}
	fmt.Fprintf(&b, "\t}\n")
	fmt.Fprintf(&b, `	chain raw {
		type filter hook prerouting priority raw; policy accept;
		meta mark & 0x%08[3]x == 0x%08[5]x ct zone set %[1]d comment "to SNAT here (steered here, or a local pod): the gateway's own conntrack zone"
		ip daddr @egress_ips ct zone set %[1]d comment "replies to an egress IP: the same zone"
	}
	chain forward {
		type filter hook forward priority filter + 10; policy accept;
		meta mark & 0x%08[2]x != 0x%08[2]x ip saddr @pod_cidrs ip daddr != @cluster_cidrs ip daddr @policy_destinations counter drop comment "fail closed: a pod whose veth has no egressgw program yet"
	}
	chain postrouting {
		type nat hook postrouting priority srcnat - 1; policy accept;
		meta mark & 0x%08[4]x == 0x%08[4]x counter snat ip to ip saddr comment "keep the pod's IP to the gateway (steered on the segment or routed): the CNI's masquerade is skipped"
		meta mark & 0x%08[3]x == 0x%08[5]x counter snat ip to meta mark & 0xffff0000 map @snat_ips comment "the gateway: SNAT to the egress IP"
	}
	chain guard {
		type filter hook postrouting priority srcnat + 10; policy accept;
		meta mark & 0x%08[3]x == 0x%08[5]x ip saddr != @egress_ips counter drop comment "fail closed: a packet meant for an egress IP never leaves with another source"
	}
}
`, ctZone, markClassified, markClassMask, markToGW, markSNAT)
	return b.String()
}

func set(b *strings.Builder, name string, prefixes []netip.Prefix) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n", name)
	if len(prefixes) > 0 {
		fmt.Fprintf(b, "\t\telements = { %s }\n", join(prefixes))
	}
	fmt.Fprintf(b, "\t}\n")
}

func join[T fmt.Stringer](items []T) string {
	s := make([]string, len(items))
	for i, it := range items {
		s[i] = it.String()
	}
	return strings.Join(s, ", ")
}
