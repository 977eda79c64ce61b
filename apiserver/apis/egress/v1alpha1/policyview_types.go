package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// EgressPolicyView is an EgressNATPolicy as the dataplane sees it: where its traffic
// leaves, which node holds its egress IP, and how many of the pods you may see it selects
// now. It has the policy's name. Its pods subresource lists the PodEgress of every pod the
// policy selects in namespaces where you may get pods.
// It is computed from the cluster's state and cannot be written.
//
// +kubebuilder:object:root=true
type EgressPolicyView struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

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
	// GatewayNode is the node the controller placed the egress IP on.
	// +optional
	GatewayNode string `json:"gatewayNode,omitempty"`
	// HeldBy are the nodes whose agents report the egress IP configured right now.
	// +listType=atomic
	// +optional
	HeldBy []string `json:"heldBy,omitempty"`
	// Standby is the node the egress IP moves to if its holder fails, and how fresh its
	// copy of the holder's connections is; absent while the IP has no standby.
	// +optional
	Standby *StandbyView `json:"standby,omitempty"`
	// Verdict is SNAT when selected traffic leaves with the egress IP, Drop when it cannot.
	Verdict Verdict `json:"verdict"`
	// Reason is the policy's readiness reason.
	Reason string `json:"reason"`
	// Message says, in one sentence, where the traffic leaves or why it cannot.
	// +optional
	Message string `json:"message,omitempty"`
	// Paths say how each node that reports its interfaces sends the policy's traffic to
	// the gateway node: on the egress IP's segment, routed (wrapped in IPv4), or not at
	// all (None: a selected pod there has its selected traffic dropped). Empty while the
	// policy has no egress IP.
	// +listType=atomic
	// +optional
	Paths []NodePaths `json:"paths,omitempty"`
	// SelectedPods is how many pods the policy selects now, counting only those in
	// namespaces where you may get pods: the view is the same for everyone who may get pods
	// everywhere, and says nothing to anyone else of the namespaces they cannot read.
	SelectedPods int32 `json:"selectedPods"`
}

// StandbyView is an egress IP's standby, as the gateway's status names it and the
// holder's agent reports its copy of the connections.
type StandbyView struct {
	// Node is the standby.
	Node string `json:"node"`
	// Copy is the state of its copy of the holder's connections (their conntrack
	// entries): InSync, Behind or NoAnswer, as the holder's NetworkGatewayNode reports
	// it; None while the holder reports no copy to this node (the copy is off there, or
	// the standby has published no heartbeat key yet), and then the connections would
	// not survive a failover.
	Copy string `json:"copy"`
	// Entries is how many entries the standby keeps from the holder.
	// +optional
	Entries int32 `json:"entries,omitempty"`
	// LagMilliseconds is how long the last acknowledged change took to reach it.
	// +optional
	LagMilliseconds int32 `json:"lagMilliseconds,omitempty"`
	// Since is when Copy last changed, as the holder reports it.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// CopyNone is a StandbyView's Copy while the holder reports no copy to the standby.
const CopyNone = "None"

// NodePaths are the nodes that send a policy's traffic to its gateway one way.
type NodePaths struct {
	// Path is OnSegment, Routed, or None.
	Path Path `json:"path"`
	// OverheadBytes is what the path adds to each packet (20 when Routed).
	// +optional
	OverheadBytes int32 `json:"overheadBytes,omitempty"`
	// Nodes are the nodes, sorted.
	// +listType=atomic
	Nodes []string `json:"nodes"`
}

// EgressPolicyViewList is a list of EgressPolicyView.
//
// +kubebuilder:object:root=true
type EgressPolicyViewList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the policies' views.
	Items []EgressPolicyView `json:"items"`
}
