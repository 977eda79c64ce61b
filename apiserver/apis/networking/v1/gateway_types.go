package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// NetworkGatewayGroup is a set of floating IPs that the controller places on nodes. Each IP
// is held by exactly one node at a time, and moves when that node goes down. The first IP
// is the egress IP of every EgressNATPolicy whose gatewayRef names this object.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=ngg,categories=egressnat
// +kubebuilder:printcolumn:name="Floating IPs",type=string,JSONPath=`.spec.floatingIPs`
// +kubebuilder:printcolumn:name="Placement",type=string,JSONPath=`.status.floatingIPs`
// +kubebuilder:printcolumn:name="Standbys",type=string,JSONPath=`.status.standbys`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NetworkGatewayGroup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec lists the floating IPs of this gateway.
	// +required
	Spec NetworkGatewayGroupSpec `json:"spec"`
	// Status reports the nodes that can hold the floating IPs and where each IP is placed.
	// The controller writes it.
	// +optional
	Status NetworkGatewayGroupStatus `json:"status,omitempty"`
}

// NetworkGatewayGroupSpec lists the floating IPs of a gateway.
type NetworkGatewayGroupSpec struct {
	// FloatingIPs are IPv4 addresses in the same layer-2 domain as the nodes, each of which
	// the controller configures on the interface of one node. A node can take an IP only if
	// one of its subnets contains it. An IP must not appear in any other gateway object.
	// Order matters: an EgressNATPolicy that refers to this gateway uses the first IP.
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Format=ipv4
	// +optional
	FloatingIPs []string `json:"floatingIPs,omitempty"`
}

// NodeState says whether a node can hold floating IPs right now.
// +kubebuilder:validation:Enum=Up;Down
type NodeState string

const (
	// NodeUp means the node's agent is alive and the node can hold floating IPs.
	NodeUp NodeState = "Up"
	// NodeDown means the node's agent stopped reporting; its floating IPs move elsewhere.
	NodeDown NodeState = "Down"
)

// NetworkGatewayGroupStatus is where the floating IPs are and how the candidate nodes are.
type NetworkGatewayGroupStatus struct {
	// Nodes maps the name of each node that can hold a floating IP of this gateway to its
	// state, Up or Down.
	// +optional
	Nodes map[string]NodeState `json:"nodes,omitempty"`
	// FloatingIPs maps each floating IP to the name of the node that holds it. An IP that no
	// node can hold is absent, and the Ready condition says why.
	// +optional
	FloatingIPs map[string]string `json:"floatingIPs,omitempty"`
	// Standbys maps each placed floating IP to its standby: the node it would move to if
	// the node holding it failed, chosen by the same rules as placement and never the
	// holder. An IP that no other node can take is absent. While the standby can take the
	// IP it stays named, and the IP moves to it first.
	// +optional
	Standbys map[string]string `json:"standbys,omitempty"`
	// Conditions are the standard conditions; Ready is True when every floating IP is placed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NetworkGatewayGroupList is a list of NetworkGatewayGroup.
// +kubebuilder:object:root=true
type NetworkGatewayGroupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NetworkGatewayGroup `json:"items"`
}
