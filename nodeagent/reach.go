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

// unreachable lists this node's pods whose selected traffic the dataplane drops for want
// of an interface on the egress IP's subnet, as "namespace/name: why", sorted. It reads
// the table the pass programs (its SNAT routes, each with its policy and egress IP), so
// it names exactly what the dataplane drops. With no interface subnets known it lists
// nothing, as OffSegment claims nothing.
func (s snapshot) unreachable(t routing.Table, ifaces []Interface) []string {
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
			if r.Verdict != routing.SNAT || named[r.Policy.Name] {
				continue
			}
			if why := routing.OffSegment(s.node, subnets, t.Egress[r.EgressID]); why != "" {
				named[r.Policy.Name] = true
				out = append(out, fmt.Sprintf("%s/%s: EgressNATPolicy %s: %s", p.Namespace, p.Name, r.Policy.Name, why))
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
