package networking

// Kinds of gateway objects. Floating IPs are unique across both kinds.
const (
	KindNetworkGatewayGroup  = "NetworkGatewayGroup"
	KindAnthosNetworkGateway = "AnthosNetworkGateway"
)

// ObjectRef names an object of this group in messages, events and decisions.
type ObjectRef struct {
	Kind, Namespace, Name string
}

// String reads like the product's messages: "NetworkGatewayGroup kube-system/gateway2",
// or "EgressNATPolicy egress" for a cluster-scoped object.
func (r ObjectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}
