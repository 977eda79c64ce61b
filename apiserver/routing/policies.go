package routing

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// Pod is what a decision needs to know about a pod.
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	IP              netip.Addr
	Node            string
	HostNetwork     bool
	// NodeReach is what the node's agent reports about reaching egress IPs: its subnets
	// (nil if it has not reported) and whether it has a router.
	NodeReach NodeReach
	// Redirected says that the node's agent found another BPF program on the pod's
	// interface, which could send its packets past the steering: its selected traffic is
	// dropped.
	Redirected bool
}

// Policy is one EgressNATPolicy compiled for decisions: selectors parsed, destinations
// parsed and masked, egress IP resolved.
type Policy struct {
	Name         string
	Created      time.Time
	Destinations []netip.Prefix
	Resolution   Resolution
	// Invalid says why the policy selects nothing: a selector that does not parse. The
	// webhook rejects such policies; this covers objects written while it was down.
	Invalid string

	sources []source
}

type source struct {
	namespaces, pods labels.Selector
}

// Policies is a compiled, immutable set of policies, in precedence order: older first,
// then the name that sorts first. Build it once per change, not per decision.
type Policies struct {
	items []*Policy
}

// Compile parses every policy once. resolve gives each its egress IP and gateway node,
// usually by calling Resolve with the caches of gateways and their placements.
func Compile(policies []*v1.EgressNATPolicy, resolve func(*v1.EgressNATPolicy) Resolution) *Policies {
	ps := &Policies{items: make([]*Policy, 0, len(policies))}
	for _, obj := range policies {
		ps.items = append(ps.items, compile(obj, resolve(obj)))
	}
	slices.SortFunc(ps.items, precedence)
	return ps
}

func compile(obj *v1.EgressNATPolicy, r Resolution) *Policy {
	p := &Policy{Name: obj.Name, Created: obj.CreationTimestamp.Time, Resolution: r}
	for _, d := range obj.Spec.Destinations {
		prefix, err := netip.ParsePrefix(strings.TrimSpace(d.CIDR))
		if err != nil || !prefix.Addr().Is4() {
			continue // The webhook rejects these; an unparsable CIDR steers nothing.
		}
		p.Destinations = append(p.Destinations, prefix.Masked())
	}
	for _, s := range obj.Spec.Sources {
		namespaces, err := selector(s.NamespaceSelector)
		if err != nil {
			p.Invalid, p.sources = "spec.sources.namespaceSelector: "+err.Error(), nil
			return p
		}
		pods, err := selector(s.PodSelector)
		if err != nil {
			p.Invalid, p.sources = "spec.sources.podSelector: "+err.Error(), nil
			return p
		}
		p.sources = append(p.sources, source{namespaces: namespaces, pods: pods})
	}
	return p
}

// selector treats an absent selector as "everything": the policy is cluster-scoped, so
// a source without a namespaceSelector means every namespace.
func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

func precedence(a, b *Policy) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// Items returns the policies in precedence order. The caller must not modify them.
func (ps *Policies) Items() []*Policy { return ps.items }

// Selects reports whether one of the policy's sources selects the pod.
func (p *Policy) Selects(pod Pod, namespaceLabels map[string]string) bool {
	if pod.HostNetwork {
		return false // A host-network pod's traffic is the node's own.
	}
	for _, s := range p.sources {
		if s.namespaces.Matches(labels.Set(namespaceLabels)) && s.pods.Matches(labels.Set(pod.Labels)) {
			return true
		}
	}
	return false
}

// Selecting returns the policies that select the pod, in precedence order.
func (ps *Policies) Selecting(pod Pod, namespaceLabels map[string]string) []*Policy {
	var out []*Policy
	for _, p := range ps.items {
		if p.Selects(pod, namespaceLabels) {
			out = append(out, p)
		}
	}
	return out
}
