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
	gateways   []gateway
	pods       []*corev1.Pod // this node's pods
	namespaces map[string]map[string]string
	cluster    []netip.Prefix
	podCIDRs   []netip.Prefix // this node's
	// granted are the floating IPs of this node's NetworkGatewayNode spec, of generation.
	granted    []string
	generation int64
}

// gateway is a gateway of either kind: its floating IPs and where they are placed.
type gateway struct {
	namespace, name string
	floatingIPs     []string
	placed          map[string]string // ip → node, from status
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
}

func (s snapshot) desired(tb *routing.TableBuilder) (desired, error) {
	firstIPs := map[[2]string][]string{}
	holders := map[string]string{}
	var d desired
	for _, g := range s.gateways {
		firstIPs[[2]string{g.namespace, g.name}] = g.floatingIPs
		listed := map[string]bool{}
		for _, ip := range g.floatingIPs {
			listed[ip] = true
		}
		for ip, node := range g.placed {
			if listed[ip] && node != "" {
				holders[ip] = node
			}
		}
	}
	for _, ip := range s.granted {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
			d.assigned = append(d.assigned, a)
		}
	}
	slices.SortFunc(d.assigned, netip.Addr.Compare)
	ps := routing.Compile(s.policies, func(p *v1.EgressNATPolicy) routing.Resolution {
		return routing.Resolve(&p.Spec,
			func(ns, name string) ([]string, bool) { ips, ok := firstIPs[[2]string{ns, name}]; return ips, ok },
			func(ip string) (string, bool) { n, ok := holders[ip]; return n, ok })
	})
	pods := make([]routing.LocalPod, 0, len(s.pods))
	for _, p := range s.pods {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		pods = append(pods, routing.LocalPod{
			Pod: routing.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, IP: ip,
				Node: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
			NamespaceLabels: s.namespaces[p.Namespace],
		})
	}
	var err error
	if d.table, err = tb.Build(ps, pods, s.cluster); err != nil {
		return desired{}, err
	}
	for _, r := range d.table.Sets[routing.UnknownSet] {
		if r.Verdict != routing.InCluster {
			d.destinations = append(d.destinations, r.Prefix)
		}
	}
	return d, nil
}
