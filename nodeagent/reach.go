package nodeagent

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// ConditionEgressReachable is the NetworkGatewayNode condition that is False while a
// selected pod of this node has a policy whose egress IP is on no subnet of the node's
// interfaces: the dataplane drops that pod's selected traffic (routing.OffSegment), and
// the condition names each such pod, its policy and why.
const ConditionEgressReachable = "EgressReachable"

// unreachable lists this node's running pods whose selected traffic for a ready policy
// the dataplane drops, for want of an interface on the egress IP's subnet, as
// "namespace/name: why", sorted. With no interface subnets known it lists nothing, as
// OffSegment claims nothing.
func (s snapshot) unreachable(ps *routing.Policies, ifaces []Interface) []string {
	var subnets []netip.Prefix
	for _, i := range ifaces {
		subnets = append(subnets, i.Subnets...)
	}
	var out []string
	for _, p := range s.pods {
		if p.Spec.HostNetwork || routing.Finished(p) {
			continue
		}
		for _, pol := range ps.Selecting(routing.PodOf(p), s.namespaces[p.Namespace]) {
			ip, err := netip.ParseAddr(pol.Resolution.EgressIP)
			if err != nil || !pol.Resolution.Ready() {
				continue
			}
			if why := routing.OffSegment(s.node, subnets, ip); why != "" {
				out = append(out, fmt.Sprintf("%s/%s: EgressNATPolicy %s: %s", p.Namespace, p.Name, pol.Name, why))
			}
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
