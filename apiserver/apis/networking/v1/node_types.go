package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// NetworkGatewayNode is what the node agent of one node reports about it: its interfaces
// and subnets, which the controller needs to place floating IPs (Node objects do not carry
// subnets), the floating IPs it holds, and its health. There is one per node, in
// kube-system, named after the node. Only that node's agent writes it.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=ngn,categories=egressnat
// +kubebuilder:printcolumn:name="Granted",type=string,JSONPath=`.spec.floatingIPs`
// +kubebuilder:printcolumn:name="Floating IPs",type=string,JSONPath=`.status.floatingIPs`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NetworkGatewayNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is written by the controller: the floating IPs the node is granted.
	// +optional
	Spec NetworkGatewayNodeSpec `json:"spec,omitempty"`
	// Status is written by the node's agent.
	// +optional
	Status NetworkGatewayNodeStatus `json:"status,omitempty"`
}

// NetworkGatewayNodeSpec is what the controller grants a node. The node holds a granted IP
// only while its heartbeat Lease is fresh on its own clock. To move an IP off a node that
// is Up, the controller first takes the IP out of this list, then waits for the node's
// status to show, for this generation, that it no longer holds it.
type NetworkGatewayNodeSpec struct {
	// FloatingIPs are the floating IPs this node is granted.
	// +listType=set
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:Format=ipv4
	// +optional
	FloatingIPs []string `json:"floatingIPs,omitempty"`
}

// NetworkGatewayNodeStatus is one node's report.
type NetworkGatewayNodeStatus struct {
	// Interfaces are the node's network interfaces that carry IPv4 addresses.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	// +optional
	Interfaces []NodeInterface `json:"interfaces,omitempty"`
	// ObservedGeneration is the generation of the spec that the agent last applied.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// FloatingIPs are the floating IPs configured on this node right now.
	// +listType=set
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:Format=ipv4
	// +optional
	FloatingIPs []string `json:"floatingIPs,omitempty"`
	// HeartbeatKeys are the X25519 public keys (base64) of the node's agent, newest first:
	// the controller's leader answers only heartbeats authenticated with one of them. The
	// agent makes a key at every start and while it rotates lists the old key second.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9+/]{43}=$`
	// +optional
	HeartbeatKeys []string `json:"heartbeatKeys,omitempty"`
	// ServedPodAddresses are the IPv4 addresses, as /32 CIDRs, of this node's pods outside
	// its Node's spec.podCIDRs and the agent's --pod-cidrs: those an IPAM that ignores
	// spec.podCIDRs (Calico IPAM, Cilium cluster-pool) handed out. Every gateway accepts
	// steered packets from them, but ignores an entry shorter than /16 or one that contains
	// a node's address or a --cluster-cidrs range. The agent lists the lowest 1024; its
	// PodsCovered condition names the pods it could not list.
	// +listType=set
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:Format=cidr
	// +optional
	ServedPodAddresses []string `json:"servedPodAddresses,omitempty"`
	// RedirectedPods are the pods of this node ("namespace/name") whose interface carries
	// another BPF program than egressgw's (a CNI that redirects in BPF could send their
	// packets past the node's routing, and the steering): their selected traffic is
	// dropped, and their views say so. The agent lists the first 1024; its PodsCovered
	// condition says which programs.
	// +listType=set
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=317
	// +optional
	RedirectedPods []string `json:"redirectedPods,omitempty"`
	// StandbyCopies say, for each floating IP this node holds that has a standby, how
	// fresh the standby's copy of the IP's connections (this node's SNAT conntrack
	// entries) is: what lets them survive a failover to it.
	// +listType=map
	// +listMapKey=ip
	// +kubebuilder:validation:MaxItems=1024
	// +optional
	StandbyCopies []StandbyCopy `json:"standbyCopies,omitempty"`
	// Conditions are the standard conditions: Ready is True while the agent is healthy,
	// CapacityExceeded while a map refuses entries, PodsCovered False while a pod of the
	// node is outside the agent's fail-closed backstop or the gateways' source filter, or
	// has another BPF program on its interface, EgressReachable False while a selected
	// pod's egress IP is on no subnet of the node's interfaces and the node has no route
	// to it (its selected traffic is dropped).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodeInterface is one network interface of a node.
type NodeInterface struct {
	// Name is the interface name, such as eth0.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	// +required
	Name string `json:"name"`
	// MAC is the interface's hardware address.
	// +optional
	MAC string `json:"mac,omitempty"`
	// Subnets are the interface's IPv4 addresses in CIDR notation, such as 192.168.1.11/24.
	// A floating IP can be placed on this node if one of these subnets contains it.
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Format=cidr
	// +optional
	Subnets []string `json:"subnets,omitempty"`
	// Routers are the next hops of the node's IPv4 routes through this interface, its
	// default gateway among them. They are in use on the segment: admission refuses them as
	// floating IPs, and placement never places them.
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Format=ipv4
	// +optional
	Routers []string `json:"routers,omitempty"`
}

// NetworkGatewayNodeList is a list of NetworkGatewayNode.
// +kubebuilder:object:root=true
type NetworkGatewayNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NetworkGatewayNode `json:"items"`
}

// StandbyCopy is the state of one floating IP's connections as its standby keeps them.
type StandbyCopy struct {
	// IP is the floating IP.
	// +kubebuilder:validation:Format=ipv4
	IP string `json:"ip"`
	// Standby is the node that keeps the copy: the gateway's status.standbys for the IP.
	// +kubebuilder:validation:MaxLength=253
	Standby string `json:"standby"`
	// State is InSync (every change acknowledged, and the standby answered within the last
	// second), Behind (changes sent and not acknowledged yet), or NoAnswer (no
	// acknowledgement for over a second: the standby is down, or unreachable on
	// --flow-copy-port).
	// +kubebuilder:validation:Enum=InSync;Behind;NoAnswer
	State string `json:"state"`
	// Entries is how many of this node's entries the standby keeps, as its last
	// acknowledgement said.
	// +optional
	Entries int32 `json:"entries,omitempty"`
	// LagMilliseconds is how long the last change the standby acknowledged took, from
	// the conntrack event on this node to the acknowledgement.
	// +optional
	LagMilliseconds int32 `json:"lagMilliseconds,omitempty"`
	// LastTransitionTime is when State last changed.
	LastTransitionTime metav1.Time `json:"lastTransitionTime"`
}

// The states of a StandbyCopy.
const (
	CopyInSync   = "InSync"
	CopyBehind   = "Behind"
	CopyNoAnswer = "NoAnswer"
)
