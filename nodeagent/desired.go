package nodeagent

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// snapshot is what one pass reads from the informer caches.
type snapshot struct {
	node       string
	policies   []*v1.EgressNATPolicy
	gateways   []routing.Gateway
	pods       []*corev1.Pod // this node's pods
	namespaces map[string]map[string]string
	cluster    []netip.Prefix
	podCIDRs   []netip.Prefix // this node's
	// nodeIPs are this node's IPv4 InternalIP addresses: with no --interfaces, the
	// interfaces on their subnets are the uplinks.
	nodeIPs []netip.Addr
	// allPodCIDRs are every node's, this node's included, and the pod addresses the other
	// nodes report serving outside theirs: the sources a gateway SNATs, but for this node's
	// own served addresses, which desired adds.
	allPodCIDRs []netip.Prefix
	// addresses are the configured cluster CIDRs and every node's addresses, this node's
	// without its served pod addresses, which a pass learns (coverage.go).
	addresses routing.ClusterAddresses
	// granted are the floating IPs of this node's NetworkGatewayNode spec, of generation.
	granted    []string
	generation int64
	// peers are the other nodes, as the conntrack copy reaches them.
	peers map[string]peer
}

// desired is what the node's kernel should hold after a pass.
type desired struct {
	table routing.Table
	// assigned are the floating IPs the controller grants this node. The agent holds them
	// only while its heartbeat is fresh.
	assigned []netip.Addr
	// destinations are every policy destination outside the cluster, for the nft backstop
	// that catches pods whose veth has no program yet.
	destinations []netip.Prefix
	// snatDestinations are, per egress IP of every gateway, what this node may SNAT to it
	// should it hold the IP: every node builds them whole, so a failover needs no write.
	snatDestinations map[netip.Addr][]netip.Prefix
	// backstop are the sources the nft backstop drops unclassified policy traffic from:
	// this node's pod CIDRs and the addresses of its pods outside them.
	backstop []netip.Prefix
	// podSources are what a gateway SNATs from: allPodCIDRs and this node's served pods.
	podSources []netip.Prefix
	cover      coverage
}

func (s snapshot) desired(tb *routing.TableBuilder) (desired, error) {
	gateways := routing.NewGateways(s.gateways)
	var d desired
	for _, ip := range s.granted {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
			d.assigned = append(d.assigned, a)
		}
	}
	slices.SortFunc(d.assigned, netip.Addr.Compare)
	ps := routing.Compile(s.policies, func(p *v1.EgressNATPolicy) routing.Resolution {
		return routing.Resolve(&p.Spec, gateways, nil)
	})
	pods := make([]routing.LocalPod, 0, len(s.pods))
	for _, p := range s.pods {
		pod := routing.PodOf(p)
		if !pod.IP.IsValid() || routing.Finished(p) {
			continue
		}
		pods = append(pods, routing.LocalPod{Pod: pod, NamespaceLabels: s.namespaces[p.Namespace]})
	}
	var err error
	if d.table, err = tb.Build(ps, pods, s.cluster); err != nil {
		return desired{}, err
	}
	d.snatDestinations = ps.SNATDestinations(s.cluster)
	d.cover = s.coverage(ps)
	d.backstop = routing.SortPrefixes(append(slices.Clone(s.podCIDRs), d.cover.served...))
	d.podSources = routing.SortPrefixes(append(slices.Clone(s.allPodCIDRs), d.cover.served...))
	for _, r := range d.table.Sets[routing.UnknownSet] {
		if r.Verdict != routing.InCluster {
			d.destinations = append(d.destinations, r.Prefix)
		}
	}
	return d, nil
}
