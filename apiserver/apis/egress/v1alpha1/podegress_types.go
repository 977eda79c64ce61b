package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// PodEgress is how one pod's traffic leaves the cluster: the EgressNATPolicies that
// select the pod, the egress IP and gateway node of each, the destination table the node
// agent programs for the pod, and what happens to the rest of its traffic. There is one
// per pod, with the pod's name, namespace and labels. It is computed from the cluster's
// state and cannot be written.
//
// +kubebuilder:object:root=true
type PodEgress struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Pod is where the pod runs and which address it sends from.
	Pod PodInfo `json:"pod"`
	// Policies are the EgressNATPolicies that select the pod, in precedence order: older
	// first, then the name that sorts first.
	// +listType=atomic
	// +optional
	Policies []SelectingPolicy `json:"policies,omitempty"`
	// Routes are the pod's steered destinations, as the node agent programs them into the
	// dataplane: a packet takes the route with the longest prefix that contains its
	// destination. Destinations inside the cluster are never steered and are left out.
	// +listType=atomic
	// +optional
	Routes []Route `json:"routes,omitempty"`
	// Overlaps are the destinations that more than one selecting policy claims, and which
	// policy wins each by the overlap rule.
	// +listType=atomic
	// +optional
	Overlaps []Overlap `json:"overlaps,omitempty"`
	// OtherTraffic is what happens to traffic that no route matches.
	OtherTraffic OtherTraffic `json:"otherTraffic"`
}

// PodInfo is where a pod runs.
type PodInfo struct {
	// IP is the pod's IPv4 address; empty until it has one.
	// +optional
	IP string `json:"ip,omitempty"`
	// NodeName is the node the pod runs on.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// NodeIP is the InternalIP of that node: the address the pod's unsteered traffic is
	// masqueraded to.
	// +optional
	NodeIP string `json:"nodeIP,omitempty"`
	// HostNetwork is true for a pod in the node's network namespace, whose traffic is the
	// node's own and is never steered.
	// +optional
	HostNetwork bool `json:"hostNetwork,omitempty"`
}

// Verdict is what the dataplane does with a packet, or with the traffic of a policy.
// +enum
type Verdict string

const (
	// VerdictSNAT steers the packet to the gateway node, which rewrites its source to the
	// egress IP.
	VerdictSNAT Verdict = "SNAT"
	// VerdictDrop drops the packet: a NetworkPolicy denies it, or a policy selects it but
	// its egress IP is held by no node (fail closed).
	VerdictDrop Verdict = "Drop"
	// VerdictMasquerade leaves the packet to the node's own masquerade: it leaves with the
	// node's IP, as if the product were not installed.
	VerdictMasquerade Verdict = "Masquerade"
	// VerdictInCluster routes the packet inside the cluster, with the pod's own IP.
	VerdictInCluster Verdict = "InCluster"
)

// Path is how a node sends steered packets to the node that holds their egress IP.
// +enum
type Path string

const (
	// PathOnSegment: the node has an interface on the egress IP's subnet and sends the
	// packet as the pod sent it, to the egress IP's virtual MAC.
	PathOnSegment Path = "OnSegment"
	// PathRouted: the egress IP is on none of the node's subnets; the node wraps the
	// packet in an IPv4 header (IPv4-in-IPv4, 20 bytes) to the egress IP, and the routed
	// node network takes it to the node that holds the IP.
	PathRouted Path = "Routed"
	// PathNone: neither; the node drops the steered packets.
	PathNone Path = "None"
)

// SelectingPolicy is one EgressNATPolicy that selects a pod, and where its traffic leaves.
type SelectingPolicy struct {
	// Name is the EgressNATPolicy's name.
	Name string `json:"name"`
	// Destinations are the policy's destination CIDRs.
	// +listType=atomic
	// +optional
	Destinations []string `json:"destinations,omitempty"`
	// Gateway is the gateway object whose first floating IP is the policy's egress IP;
	// absent for a policy written as v1alpha1 with an egressSourceIP.
	// +optional
	Gateway *ObjectReference `json:"gateway,omitempty"`
	// EgressIP is the source address the policy's traffic leaves with.
	// +optional
	EgressIP string `json:"egressIP,omitempty"`
	// GatewayNode is the node the controller placed the egress IP on
	// (the gateway's status.floatingIPs). Empty while no node holds it.
	// +optional
	GatewayNode string `json:"gatewayNode,omitempty"`
	// HeldBy are the nodes whose agents report the egress IP configured right now
	// (their NetworkGatewayNode status). Normally just the gateway node; during a
	// failover the old node may still appear until its agent lets go.
	// +listType=atomic
	// +optional
	HeldBy []string `json:"heldBy,omitempty"`
	// Path is how the pod's node sends the policy's traffic to the gateway node:
	// OnSegment or Routed. Empty when the traffic is dropped.
	// +optional
	Path Path `json:"path,omitempty"`
	// OverheadBytes is what the path adds to each packet: 20 on the Routed path (the
	// outer IPv4 header), 0 on the segment.
	// +optional
	OverheadBytes int32 `json:"overheadBytes,omitempty"`
	// Verdict is SNAT when the policy's traffic leaves with its egress IP, and Drop when
	// it cannot and is dropped instead.
	Verdict Verdict `json:"verdict"`
	// Reason is the policy's readiness reason: Ready, GatewayNotFound, NoFloatingIP or
	// UnknownEgressIP.
	Reason string `json:"reason"`
	// Message says, in one sentence, where the traffic leaves or why it cannot.
	// +optional
	Message string `json:"message,omitempty"`
}

// ObjectReference names an object of the networking.gke.io group.
type ObjectReference struct {
	// Kind is NetworkGatewayGroup or AnthosNetworkGateway.
	Kind string `json:"kind"`
	// Namespace is the object's namespace.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Name is the object's name.
	Name string `json:"name"`
}

// Route is one entry of a pod's destination table.
type Route struct {
	// Destination is an IPv4 CIDR.
	Destination string `json:"destination"`
	// Verdict is SNAT or Drop.
	Verdict Verdict `json:"verdict"`
	// Policy is the EgressNATPolicy the route belongs to.
	Policy string `json:"policy"`
	// EgressIP is the source address the traffic leaves with, for a SNAT route.
	// +optional
	EgressIP string `json:"egressIP,omitempty"`
	// GatewayNode is the node the traffic leaves through, for a SNAT route.
	// +optional
	GatewayNode string `json:"gatewayNode,omitempty"`
	// Path is how the pod's node sends the traffic to the gateway node, for a SNAT route.
	// +optional
	Path Path `json:"path,omitempty"`
	// OverheadBytes is what the path adds to each packet (20 when Routed).
	// +optional
	OverheadBytes int32 `json:"overheadBytes,omitempty"`
}

// Overlap is a destination that several selecting policies claim.
type Overlap struct {
	// Destination is the CIDR of the winning route.
	Destination string `json:"destination"`
	// Policy is the policy whose route wins.
	Policy string `json:"policy"`
	// Overridden are the other selecting policies whose destinations also contain it.
	// +listType=atomic
	Overridden []string `json:"overridden"`
	// Rule is the overlap rule that decided: the longest prefix wins; on an equal prefix
	// the older policy wins, then the name that sorts first.
	Rule string `json:"rule"`
}

// OtherTraffic is what happens to a pod's traffic that no route steers.
type OtherTraffic struct {
	// Verdict is Masquerade: the pod's node rewrites the source to its own IP.
	Verdict Verdict `json:"verdict"`
	// NodeName is the node that masquerades.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// NodeIP is the address the traffic leaves with.
	// +optional
	NodeIP string `json:"nodeIP,omitempty"`
	// Message says it in one sentence.
	// +optional
	Message string `json:"message,omitempty"`
}

// PodEgressList is a list of PodEgress.
//
// +kubebuilder:object:root=true
type PodEgressList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the pods' views.
	Items []PodEgress `json:"items"`
}
