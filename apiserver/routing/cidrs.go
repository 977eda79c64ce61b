package routing

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// NodePodCIDRs are a Node's IPv4 pod CIDRs, masked, each once (spec.podCIDR is also the
// first of spec.podCIDRs).
func NodePodCIDRs(n *corev1.Node) []netip.Prefix {
	var out []netip.Prefix
	for _, raw := range append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...) {
		if p, err := netip.ParsePrefix(raw); err == nil && p.Addr().Is4() && !slices.Contains(out, p.Masked()) {
			out = append(out, p.Masked())
		}
	}
	return out
}

// SortPrefixes sorts prefixes by address, then length, and drops repeats, in place: lists
// gathered from maps (every node's pod CIDRs) come out the same on every pass.
func SortPrefixes(prefixes []netip.Prefix) []netip.Prefix {
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(prefixes)
}
