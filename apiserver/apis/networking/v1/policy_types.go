package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// EgressNATPolicy selects pod traffic by source (namespace and pod labels) and destination
// (CIDRs), and sends it out through a gateway node with the gateway's first floating IP as
// its source address. Traffic it does not select keeps the default: masquerade to the IP of
// the pod's own node. Network policy is evaluated first; a packet it drops never gets here.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=enp,categories=egressnat
// +kubebuilder:printcolumn:name="Egress IP",type=string,JSONPath=`.status.egressIP`
// +kubebuilder:printcolumn:name="Gateway",type=string,JSONPath=`.spec.gatewayRef.name`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.gatewayNode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EgressNATPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which traffic this policy selects and which gateway it leaves through.
	// +required
	Spec EgressNATPolicySpec `json:"spec"`
	// Status is the resolved egress IP and gateway node. The controller writes it.
	// +optional
	Status EgressNATPolicyStatus `json:"status,omitempty"`
}

// EgressNATPolicySpec selects traffic and names the gateway it leaves through.
//
// +kubebuilder:validation:XValidation:rule="has(self.gatewayRef) || has(self.egressSourceIP)",message="set gatewayRef to the NetworkGatewayGroup whose first floating IP this policy uses"
// +kubebuilder:validation:XValidation:rule="!(has(self.gatewayRef) && has(self.egressSourceIP))",message="set gatewayRef or egressSourceIP, not both; egressSourceIP exists only for policies written as v1alpha1"
type EgressNATPolicySpec struct {
	// Sources select pods. A pod is selected if it matches any source (OR); within one
	// source, the pod must match both selectors (AND).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +required
	Sources []EgressSource `json:"sources"`
	// Action is what happens to selected traffic. SNAT, the only action, rewrites its source
	// address to the egress IP on the gateway node.
	// +required
	Action EgressAction `json:"action"`
	// Destinations select traffic by destination address. Traffic from a selected pod to an
	// address in any of these IPv4 CIDRs is selected.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1024
	// +listType=atomic
	// +required
	Destinations []Destination `json:"destinations"`
	// AllowClusterOverlap lets destinations cover the cluster's own addresses: 0.0.0.0/0,
	// or a CIDR that contains or overlaps the pod CIDRs, the service CIDRs or a node's
	// subnet. Without it, admission refuses such a destination, because in-cluster traffic
	// must never leave through a gateway. With it, only the addresses outside the cluster are
	// steered: the node agents never steer their --cluster-cidrs and the nodes' pod CIDRs,
	// so those must list every in-cluster range.
	// +optional
	AllowClusterOverlap bool `json:"allowClusterOverlap,omitempty"`
	// GatewayRef names the NetworkGatewayGroup whose first floating IP is this policy's
	// egress IP. The gateway's other floating IPs are not used by this policy.
	// +optional
	GatewayRef *GatewayReference `json:"gatewayRef,omitempty"`
	// EgressSourceIP is the egress IP of a policy written as networking.gke.io/v1alpha1,
	// where it names a floating IP of an AnthosNetworkGateway. Policies written as v1 use
	// gatewayRef instead.
	// +kubebuilder:validation:Format=ipv4
	// +optional
	EgressSourceIP string `json:"egressSourceIP,omitempty"`
}

// EgressSource selects pods by the labels of their namespace and their own labels.
//
// +kubebuilder:validation:XValidation:rule="has(self.namespaceSelector) || has(self.podSelector)",message="set namespaceSelector, podSelector or both; an empty selector {} selects everything"
type EgressSource struct {
	// NamespaceSelector selects namespaces by label. Absent or empty, it selects every
	// namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// PodSelector selects pods, in the selected namespaces, by label. Absent or empty, it
	// selects every pod in them.
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
}

// EgressAction is what an EgressNATPolicy does to the traffic it selects.
// +kubebuilder:validation:Enum=SNAT
type EgressAction string

// ActionSNAT rewrites the source address to the egress IP on the gateway node.
const ActionSNAT EgressAction = "SNAT"

// Destination is a range of destination addresses.
type Destination struct {
	// CIDR is an IPv4 address range, such as 8.8.8.0/24. The egress NAT gateway is IPv4-only.
	// +kubebuilder:validation:Format=cidr
	// +kubebuilder:validation:MaxLength=18
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self).ip().family() == 4",message="must be an IPv4 CIDR such as 8.8.8.0/24: the egress NAT gateway is IPv4-only"
	// +required
	CIDR string `json:"cidr"`
}

// GatewayReference names a NetworkGatewayGroup.
type GatewayReference struct {
	// Name is the NetworkGatewayGroup's name.
	// +kubebuilder:validation:MinLength=1
	// +required
	Name string `json:"name"`
	// Namespace is the NetworkGatewayGroup's namespace, usually kube-system.
	// +kubebuilder:validation:MinLength=1
	// +required
	Namespace string `json:"namespace"`
}

// EgressNATPolicyStatus is the policy as the controller resolved it.
type EgressNATPolicyStatus struct {
	// EgressIP is the source address that selected traffic leaves with: the first floating IP
	// of the gateway, or egressSourceIP for a v1alpha1 policy.
	// +optional
	EgressIP string `json:"egressIP,omitempty"`
	// GatewayNode is the node that holds the egress IP now, through which selected traffic
	// leaves. Empty while no node holds it.
	// +optional
	GatewayNode string `json:"gatewayNode,omitempty"`
	// Conditions are the standard conditions; Ready is True when the egress IP is held by a
	// node and selected traffic leaves through it.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// EgressNATPolicyList is a list of EgressNATPolicy.
// +kubebuilder:object:root=true
type EgressNATPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EgressNATPolicy `json:"items"`
}

// ConditionReady is the condition type that every resource of this group reports.
const ConditionReady = "Ready"
