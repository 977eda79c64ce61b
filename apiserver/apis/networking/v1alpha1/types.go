package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// AnthosNetworkGateway is the legacy name of NetworkGatewayGroup: a set of floating IPs
// that the controller places on nodes.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=ang,categories=egressnat
// +kubebuilder:printcolumn:name="Floating IPs",type=string,JSONPath=`.spec.floatingIPs`
// +kubebuilder:printcolumn:name="Placement",type=string,JSONPath=`.status.floatingIPs`
// +kubebuilder:printcolumn:name="Standbys",type=string,JSONPath=`.status.standbys`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AnthosNetworkGateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec lists the floating IPs of this gateway.
	// +required
	Spec v1.NetworkGatewayGroupSpec `json:"spec"`
	// Status reports the nodes that can hold the floating IPs and where each IP is placed.
	// +optional
	Status v1.NetworkGatewayGroupStatus `json:"status,omitempty"`
}

// AnthosNetworkGatewayList is a list of AnthosNetworkGateway.
// +kubebuilder:object:root=true
type AnthosNetworkGatewayList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AnthosNetworkGateway `json:"items"`
}

// AnthosNetworkGatewayNode is the legacy name of NetworkGatewayNode: one node's interfaces,
// subnets, floating IPs and health, as its agent reports them.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=angn,categories=egressnat
// +kubebuilder:printcolumn:name="Floating IPs",type=string,JSONPath=`.status.floatingIPs`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AnthosNetworkGatewayNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is written by the controller: the floating IPs the node is granted.
	// +optional
	Spec v1.NetworkGatewayNodeSpec `json:"spec,omitempty"`
	// Status is written by the node's agent.
	// +optional
	Status v1.NetworkGatewayNodeStatus `json:"status,omitempty"`
}

// AnthosNetworkGatewayNodeList is a list of AnthosNetworkGatewayNode.
// +kubebuilder:object:root=true
type AnthosNetworkGatewayNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AnthosNetworkGatewayNode `json:"items"`
}

// EgressNATPolicy (v1alpha1) selects pod traffic by source and destination and gives it a
// fixed source address, egressSourceIP, which must be a floating IP of an
// AnthosNetworkGateway. Every policy must use a different egressSourceIP.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=enp,categories=egressnat
// +kubebuilder:printcolumn:name="Egress IP",type=string,JSONPath=`.spec.egressSourceIP`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.gatewayNode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EgressNATPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec selects traffic and names its source address.
	// +required
	Spec EgressNATPolicySpec `json:"spec"`
	// Status is the resolved egress IP and gateway node. The controller writes it.
	// +optional
	Status v1.EgressNATPolicyStatus `json:"status,omitempty"`
}

// EgressNATPolicySpec selects traffic and names its source address. All three fields are
// required.
type EgressNATPolicySpec struct {
	// Egress are the traffic selection rules. A pod is selected if it matches any rule (OR);
	// within one rule, the pod must match both selectors (AND).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +required
	Egress []v1.EgressSource `json:"egress"`
	// DestinationCIDRs select traffic by destination: traffic from a selected pod to an
	// address in any of these IPv4 CIDRs is selected.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:Format=cidr
	// +kubebuilder:validation:items:MaxLength=18
	// +kubebuilder:validation:XValidation:rule="self.all(c, !isCIDR(c) || cidr(c).ip().family() == 4)",message="every destination CIDR must be IPv4, such as 8.8.8.0/24: the egress NAT gateway is IPv4-only"
	// +listType=atomic
	// +required
	DestinationCIDRs []string `json:"destinationCIDRs"`
	// EgressSourceIP is the source address of selected traffic. It must be a floating IP of
	// an AnthosNetworkGateway, in the same subnet as the gateway node, and no other policy
	// may use it.
	// +kubebuilder:validation:Format=ipv4
	// +required
	EgressSourceIP string `json:"egressSourceIP"`
}

// EgressNATPolicyList is a list of EgressNATPolicy.
// +kubebuilder:object:root=true
type EgressNATPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EgressNATPolicy `json:"items"`
}
