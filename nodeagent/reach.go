package nodeagent

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
)

// ConditionEgressReachable is the NetworkGatewayNode condition that is False while a
// selected pod of this node has a policy whose egress IP the node cannot reach: on no
// subnet of its interfaces, and with no route to it. The dataplane drops that pod's
// selected traffic, and the condition names each such pod, its policy and why.
const ConditionEgressReachable = "EgressReachable"

// unreachable lists this node's pods whose selected traffic the dataplane drops for want
// of a way to the egress IP (noRoute: the egress IPs on none of the node's subnets that
// it has no route to), as "namespace/name: why", sorted. It reads the table the pass
// programs (its SNAT routes, each with its policy and egress IP), so it names exactly
// what the dataplane drops.
func (s snapshot) unreachable(t routing.Table, ifaces []Interface, noRoute []netip.Addr) []string {
	var subnets []netip.Prefix
	for _, i := range ifaces {
		subnets = append(subnets, i.Subnets...)
	}
	var out []string
	for _, p := range s.pods {
		ip := routing.PodOf(p).IP
		set, ok := t.Pods[ip]
		if !ok || p.Spec.HostNetwork || routing.Finished(p) {
			continue
		}
		named := map[string]bool{}
		for _, r := range t.Sets[set] {
			egressIP := t.Egress[r.EgressID]
			if r.Verdict != routing.SNAT || named[r.Policy.Name] || !slices.Contains(noRoute, egressIP) {
				continue
			}
			named[r.Policy.Name] = true
			out = append(out, fmt.Sprintf("%s/%s: EgressNATPolicy %s: %s", p.Namespace, p.Name, r.Policy.Name, routing.NoRoute(s.node, subnets, egressIP)))
		}
	}
	slices.Sort(out)
	return out
}

// unreachableMessage is the EgressReachable condition's message when False: empty when
// every selected pod reaches its egress IPs.
func unreachableMessage(pods []string) string {
	return namePods("%d pods' selected traffic is dropped on this node", pods)
}

// offSegment are the floating IPs on none of the node's subnets (onLink holds the rest).
func offSegment(floatingIPs, onLink []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, ip := range floatingIPs {
		if !slices.Contains(onLink, ip) {
			out = append(out, ip)
		}
	}
	return out
}

// routeOffSegment tells the dataplane how the node reaches, through routers, each
// floating IP on none of its subnets (offLink): by the kernel's route to it, which the
// routed way's outer header leaves by, from the address the kernel picks. It returns the
// IPs the node has no route to: their pods' steered packets are dropped.
func (at *attacher) routeOffSegment(offLink []netip.Addr) ([]netip.Addr, error) {
	routed := map[netip.Addr]bpf.Routed{}
	var noRoute []netip.Addr
	for _, ip := range offLink {
		if r, ok := at.host.RouteTo(ip); ok {
			routed[ip] = r
		} else {
			noRoute = append(noRoute, ip)
		}
	}
	if at.routed != nil && maps.Equal(routed, at.routed) {
		return noRoute, nil
	}
	if err := at.dp.SetRouted(routed); err != nil {
		at.routed = nil // what the map holds is unknown: write it again
		return noRoute, fmt.Errorf("programming the routes to egress IPs on other segments: %w", err)
	}
	at.routed = routed
	return noRoute, nil
}
