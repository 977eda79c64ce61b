package routing

import (
	"fmt"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// Reasons a policy is not ready, as they appear in its Ready condition and events.
const (
	ReasonReady           = "Ready"
	ReasonGatewayNotFound = "GatewayNotFound"
	ReasonNoFloatingIP    = "NoFloatingIP"
	// ReasonUnknownEgressIP is the spec's event for an egress IP that no node holds.
	ReasonUnknownEgressIP = "UnknownEgressIP"
)

// Holders looks up the node that holds a floating IP now.
type Holders func(ip string) (node string, held bool)

// Resolution is where a policy's traffic leaves: its egress IP and the node holding it.
// Reason is ReasonReady when both are known; otherwise Message says what is missing.
type Resolution struct {
	EgressIP string
	Node     string
	Reason   string
	Message  string
}

// Ready reports whether selected traffic can leave: the egress IP is held by a node.
func (r Resolution) Ready() bool { return r.Reason == ReasonReady }

// Resolve finds a policy's egress IP and gateway node. A v1 policy uses the first floating
// IP of the NetworkGatewayGroup its gatewayRef names, and ignores the others; a policy
// written as v1alpha1 uses its egressSourceIP. The node holding the IP is the one holders
// names; nil holders take the gateways' status.
func Resolve(spec *v1.EgressNATPolicySpec, gateways *Gateways, holders Holders) Resolution {
	if holders == nil {
		holders = gateways.Placed
	}
	var r Resolution
	switch ref := spec.GatewayRef; {
	case ref != nil:
		ips, found := gateways.Referenced(*ref)
		if !found {
			r.Reason = ReasonGatewayNotFound
			r.Message = fmt.Sprintf("NetworkGatewayGroup %s/%s does not exist; selected traffic is dropped until it does", ref.Namespace, ref.Name)
			if gateways.legacy[[2]string{ref.Namespace, ref.Name}] {
				r.Message += fmt.Sprintf(" (AnthosNetworkGateway %s/%s does, but a gatewayRef names a NetworkGatewayGroup only: create one with the same floating IPs, or write the policy as v1alpha1 with egressSourceIP)", ref.Namespace, ref.Name)
			}
			return r
		}
		if len(ips) == 0 {
			r.Reason = ReasonNoFloatingIP
			r.Message = fmt.Sprintf("NetworkGatewayGroup %s/%s has no floating IPs; selected traffic is dropped until it has one", ref.Namespace, ref.Name)
			return r
		}
		r.EgressIP = ips[0]
	case spec.EgressSourceIP != "":
		r.EgressIP = spec.EgressSourceIP
	default:
		r.Reason = ReasonGatewayNotFound
		r.Message = "the policy names neither a gatewayRef nor an egressSourceIP"
		return r
	}
	node, held := holders(r.EgressIP)
	if !held {
		r.Reason = ReasonUnknownEgressIP
		r.Message = fmt.Sprintf("egress IP %s is assigned to no node; selected traffic is dropped until a node holds it", r.EgressIP)
		return r
	}
	r.Node, r.Reason = node, ReasonReady
	r.Message = fmt.Sprintf("selected traffic leaves through node %s with source %s", node, r.EgressIP)
	return r
}
