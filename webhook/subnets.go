package webhook

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/webhook/validation"
)

// subnetSet is the set of subnets that node agents report, kept current by informer events.
// Whether some subnet contains an address is the question every new floating IP asks;
// answering it from a few distinct prefixes costs no allocation, where a cache List per
// candidate prefix cost one each.
type subnetSet struct {
	mu     sync.RWMutex
	byNode map[string][]netip.Prefix // node report name -> its masked subnets
	count  map[netip.Prefix]int      // masked subnet -> how many reports carry it
	// configured are the pod and service CIDRs of the flags, which never change.
	configured []validation.ClusterCIDR
	// podCIDRs are every Node's spec.podCIDRs, by node name.
	podCIDRs map[string][]netip.Prefix
}

func newSubnetSet(configured []validation.ClusterCIDR) *subnetSet {
	return &subnetSet{byNode: map[string][]netip.Prefix{}, count: map[netip.Prefix]int{}, configured: configured,
		podCIDRs: map[string][]netip.Prefix{}}
}

// minClusterSubnetBits is the shortest reported subnet taken as one of the cluster's own
// ranges. A node that reports 0.0.0.0/0 is not on a segment that size (placement ignores
// such a report too); believed, it would make every destination overlap the cluster.
const minClusterSubnetBits = 8

// ClusterCIDRs returns the configured ranges, then the Nodes' pod CIDRs and the reported
// subnets, each by node name.
func (s *subnetSet) ClusterCIDRs() []validation.ClusterCIDR {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := slices.Clone(s.configured)
	for _, name := range slices.Sorted(maps.Keys(s.podCIDRs)) {
		for _, p := range s.podCIDRs[name] {
			out = append(out, validation.ClusterCIDR{Prefix: p, Kind: validation.CIDRPods, Source: "Node " + name + "'s spec.podCIDRs"})
		}
	}
	for _, key := range slices.Sorted(maps.Keys(s.byNode)) {
		_, name, _ := strings.Cut(key, "/")
		for _, p := range s.byNode[key] {
			if p.Bits() >= minClusterSubnetBits {
				out = append(out, validation.ClusterCIDR{Prefix: p, Kind: validation.CIDRNodes, Source: "node " + name + "'s report"})
			}
		}
	}
	return out
}

// Contains reports whether some reported subnet contains ip.
func (s *subnetSet) Contains(ip netip.Addr) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for p := range s.count {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Containing returns the reported subnets that contain ip.
func (s *subnetSet) Containing(ip netip.Addr) []netip.Prefix {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []netip.Prefix
	for p := range s.count {
		if p.Contains(ip) {
			out = append(out, p)
		}
	}
	return out
}

func (s *subnetSet) set(name string, subnets []netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.byNode[name] {
		if s.count[p]--; s.count[p] == 0 {
			delete(s.count, p)
		}
	}
	if len(subnets) == 0 {
		delete(s.byNode, name)
		return
	}
	s.byNode[name] = subnets
	for _, p := range subnets {
		s.count[p]++
	}
}

// handler keeps the set in step with the NetworkGatewayNode informer.
func (s *subnetSet) handler() toolscache.ResourceEventHandler {
	return informerHandler(func(n *v1.NetworkGatewayNode) {
		var subnets []netip.Prefix
		for _, raw := range nodeReport(n, func(p netip.Prefix) string { return p.Masked().String() }) {
			subnets = append(subnets, netip.MustParsePrefix(raw))
		}
		s.set(n.Namespace+"/"+n.Name, subnets)
	}, func(n *v1.NetworkGatewayNode) { s.set(n.Namespace+"/"+n.Name, nil) })
}

// informerHandler calls update with every object of type T the informer adds or
// updates, and remove with every one it deletes, tombstones included.
func informerHandler[T any](update, remove func(T)) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { call(update, obj) },
		UpdateFunc: func(_, obj any) { call(update, obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			call(remove, obj)
		},
	}
}

func call[T any](f func(T), obj any) {
	if o, ok := obj.(T); ok {
		f(o)
	}
}

func (s *subnetSet) setPodCIDRs(node string, cidrs []netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(cidrs) == 0 {
		delete(s.podCIDRs, node)
		return
	}
	s.podCIDRs[node] = cidrs
}

// nodeHandler keeps the Nodes' pod CIDRs in step with the Node informer, so that no
// request lists the Nodes.
func (s *subnetSet) nodeHandler() toolscache.ResourceEventHandler {
	return informerHandler(func(n *corev1.Node) { s.setPodCIDRs(n.Name, routing.NodePodCIDRs(n)) },
		func(n *corev1.Node) { s.setPodCIDRs(n.Name, nil) })
}
