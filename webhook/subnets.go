package webhook

import (
	"net/netip"
	"sync"

	toolscache "k8s.io/client-go/tools/cache"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// subnetSet is the set of subnets that node agents report, kept current by informer events.
// Whether some subnet contains an address is the question every new floating IP asks;
// answering it from a few distinct prefixes costs no allocation, where a cache List per
// candidate prefix cost one each.
type subnetSet struct {
	mu     sync.RWMutex
	byNode map[string][]netip.Prefix // node report name -> its masked subnets
	count  map[netip.Prefix]int      // masked subnet -> how many reports carry it
}

func newSubnetSet() *subnetSet {
	return &subnetSet{byNode: map[string][]netip.Prefix{}, count: map[netip.Prefix]int{}}
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
	update := func(obj any) {
		if n, ok := obj.(*v1.NetworkGatewayNode); ok {
			var subnets []netip.Prefix
			for _, raw := range nodeReport(n, func(p netip.Prefix) string { return p.Masked().String() }) {
				subnets = append(subnets, netip.MustParsePrefix(raw))
			}
			s.set(n.Namespace+"/"+n.Name, subnets)
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, obj any) { update(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if n, ok := obj.(*v1.NetworkGatewayNode); ok {
				s.set(n.Namespace+"/"+n.Name, nil)
			}
		},
	}
}
