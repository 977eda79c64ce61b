package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// EgressPreview asks which path one packet would take, without sending it: the source
// pod's egress NetworkPolicy verdict, the EgressNATPolicy that matches, the gateway node
// and source address it leaves with, and the way its reply comes back. Create it and read
// the answer in status, as with a SubjectAccessReview; nothing is stored. The answer comes
// from the same code that builds the dataplane's tables.
//
// +kubebuilder:object:root=true
type EgressPreview struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the packet to preview.
	Spec EgressPreviewSpec `json:"spec"`
	// Status is the path it takes, filled in by the server.
	// +optional
	Status EgressPreviewStatus `json:"status,omitempty"`
}

// Protocol is an IP protocol a preview can ask about.
// +enum
type Protocol string

// The protocols a preview can ask about.
const (
	ProtocolTCP  Protocol = "TCP"
	ProtocolUDP  Protocol = "UDP"
	ProtocolSCTP Protocol = "SCTP"
	ProtocolICMP Protocol = "ICMP"
)

// EgressPreviewSpec is one packet: from a pod, to an address.
type EgressPreviewSpec struct {
	// Source is the pod the packet leaves from: by namespace and name, or by IP.
	Source PreviewSource `json:"source"`
	// Destination is the packet's IPv4 destination address, such as 8.8.8.8.
	Destination string `json:"destination"`
	// Protocol is TCP, UDP, SCTP or ICMP. Defaults to TCP.
	// +optional
	Protocol Protocol `json:"protocol,omitempty"`
	// Port is the destination port, 1 to 65535, for TCP, UDP and SCTP. Without it,
	// NetworkPolicy rules that name ports are taken not to match.
	// +optional
	Port int32 `json:"port,omitempty"`
}

// PreviewSource names a pod: set namespace and name, or ip.
type PreviewSource struct {
	// Namespace is the pod's namespace.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Name is the pod's name.
	// +optional
	Name string `json:"name,omitempty"`
	// IP is the pod's IPv4 address, instead of namespace and name.
	// +optional
	IP string `json:"ip,omitempty"`
}

// EgressPreviewStatus is the path of the packet.
type EgressPreviewStatus struct {
	// Pod is the source pod, resolved.
	// +optional
	Pod *PodReference `json:"pod,omitempty"`
	// Verdict is the outcome: Drop, SNAT, Masquerade or InCluster.
	// +optional
	Verdict Verdict `json:"verdict,omitempty"`
	// SourceIP is the source address the destination sees; empty for a dropped packet.
	// +optional
	SourceIP string `json:"sourceIP,omitempty"`
	// Policy is the EgressNATPolicy that matched, if any.
	// +optional
	Policy string `json:"policy,omitempty"`
	// GatewayNode is the node the packet leaves the cluster through.
	// +optional
	GatewayNode string `json:"gatewayNode,omitempty"`
	// Path is how the pod's node sends a SNAT packet to the gateway node: OnSegment or
	// Routed.
	// +optional
	Path Path `json:"path,omitempty"`
	// OverheadBytes is what the path adds to the packet (20 when Routed).
	// +optional
	OverheadBytes int32 `json:"overheadBytes,omitempty"`
	// Overlap is set when other selecting policies claim the destination too, and lost to
	// Policy by the overlap rule.
	// +optional
	Overlap *Overlap `json:"overlap,omitempty"`
	// Steps are the packet's path, in order, ending with a drop or with the reply
	// delivered back to the pod.
	// +listType=atomic
	// +optional
	Steps []PathStep `json:"steps,omitempty"`
}

// PodReference is a pod and where it runs.
type PodReference struct {
	// Namespace is the pod's namespace.
	Namespace string `json:"namespace"`
	// Name is the pod's name.
	Name string `json:"name"`
	// IP is the pod's IPv4 address.
	// +optional
	IP string `json:"ip,omitempty"`
	// NodeName is the node it runs on.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
}

// Stage is a part of a packet's path.
// +enum
type Stage string

// The stages of a path, in the order a packet meets them.
const (
	StageNetworkPolicy   Stage = "NetworkPolicy"
	StageEgressNATPolicy Stage = "EgressNATPolicy"
	StageGateway         Stage = "Gateway"
	StageReturn          Stage = "Return"
)

// PathStep is one step of a packet's path.
type PathStep struct {
	// Stage is NetworkPolicy, EgressNATPolicy, Gateway or Return.
	Stage Stage `json:"stage"`
	// Action is what happens: Allow, Drop, Steer, SNAT, Masquerade, Route, Conntrack or
	// Deliver.
	Action string `json:"action"`
	// Node is where it happens.
	// +optional
	Node string `json:"node,omitempty"`
	// Object is what decided it, such as "NetworkPolicy alice/deny-dns".
	// +optional
	Object string `json:"object,omitempty"`
	// Message says it in one sentence.
	Message string `json:"message"`
}

// PreviewOptions are the query parameters of the preview subresource of a PodEgress:
// GET .../namespaces/NS/podegresses/POD/preview?destination=8.8.8.8&protocol=TCP&port=443
//
// +kubebuilder:object:root=true
type PreviewOptions struct {
	metav1.TypeMeta `json:",inline"`

	// Destination is the packet's IPv4 destination address.
	Destination string `json:"destination,omitempty"`
	// Protocol is TCP, UDP, SCTP or ICMP. Defaults to TCP. A plain string: query
	// parameters are documented by their Go type, which must be a simple one.
	// +optional
	Protocol string `json:"protocol,omitempty"`
	// Port is the destination port.
	// +optional
	Port int32 `json:"port,omitempty"`
}
