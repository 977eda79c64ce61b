package controller

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/controller/placement"
)

// LeaseNamespace and LeasePrefix name each node agent's heartbeat Lease:
// kube-system/egressgw-node-<node>. The agent renews it; the controller watches it.
const (
	LeaseNamespace = networking.NodeNamespace
	LeasePrefix    = heartbeat.LeasePrefix
)

// NodeReportNamespace holds the NetworkGatewayNode of every node.
const NodeReportNamespace = networking.NodeNamespace

// controlPlaneLabel marks control-plane nodes; workers are preferred for floating IPs.
const controlPlaneLabel = "node-role.kubernetes.io/control-plane"

// gatewayObject is a gateway of either kind, as placement and status need it.
type gatewayObject struct {
	id     placement.GatewayID
	obj    client.Object
	spec   *v1.NetworkGatewayGroupSpec
	status *v1.NetworkGatewayGroupStatus
}

// placementNodes joins each node report (subnets) with its Node (role, cordon, addresses)
// and its liveness. A node without a report has no known subnet and can hold nothing, but
// its addresses are still never placed.
func placementNodes(reports []v1.NetworkGatewayNode, nodes []corev1.Node, up map[string]bool) []placement.Node {
	byName := map[string]*corev1.Node{}
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	var out []placement.Node
	reported := map[string]bool{}
	for _, r := range reports {
		reported[r.Name] = true
		n := placement.Node{Name: r.Name, Up: up[r.Name]}
		for _, iface := range r.Status.Interfaces {
			for _, s := range iface.Subnets {
				if p, err := netip.ParsePrefix(s); err == nil {
					n.Subnets = append(n.Subnets, p)
				}
			}
			for _, s := range iface.Routers {
				if ip, err := netip.ParseAddr(s); err == nil {
					n.Routers = append(n.Routers, ip)
				}
			}
		}
		if node := byName[r.Name]; node != nil {
			_, n.ControlPlane = node.Labels[controlPlaneLabel]
			n.Cordoned = node.Spec.Unschedulable
			n.Addresses = nodeAddresses(node)
		}
		out = append(out, n)
	}
	for i := range nodes {
		if !reported[nodes[i].Name] {
			out = append(out, placement.Node{Name: nodes[i].Name, Addresses: nodeAddresses(&nodes[i])})
		}
	}
	return out
}

// nodeAddresses are the IP addresses in a Node's status.
func nodeAddresses(node *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range node.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

// placementInput turns the gateways into placement's input, with the current assignment
// and standbys read back from their status: that is what makes placement sticky across
// restarts.
func placementInput(gateways []gatewayObject, nodes []placement.Node) placement.Input {
	in := placement.Input{Nodes: nodes, Current: map[netip.Addr]string{}, Standbys: map[netip.Addr]string{}}
	for _, g := range gateways {
		pg := placement.Gateway{ID: g.id, Created: g.obj.GetCreationTimestamp().Time}
		listed := map[string]bool{}
		for _, raw := range g.spec.FloatingIPs {
			if ip, err := netip.ParseAddr(raw); err == nil {
				pg.FloatingIPs = append(pg.FloatingIPs, ip)
				listed[raw] = true
			}
		}
		for raw, node := range g.status.FloatingIPs {
			if ip, err := netip.ParseAddr(raw); err == nil && listed[raw] && node != "" {
				in.Current[ip] = node
			}
		}
		for raw, node := range g.status.Standbys {
			if ip, err := netip.ParseAddr(raw); err == nil && listed[raw] && node != "" {
				in.Standbys[ip] = node
			}
		}
		in.Gateways = append(in.Gateways, pg)
	}
	return in
}

// collectGateways lists the gateways of both kinds as one: floating IPs are unique across
// both, so they are placed together.
func collectGateways(groups []v1.NetworkGatewayGroup, legacy []v1alpha1.AnthosNetworkGateway) []gatewayObject {
	var out []gatewayObject
	for i := range groups {
		g := &groups[i]
		out = append(out, gatewayObject{id: placement.GatewayID{Kind: networking.KindNetworkGatewayGroup, Namespace: g.Namespace, Name: g.Name}, obj: g, spec: &g.Spec, status: &g.Status})
	}
	for i := range legacy {
		g := &legacy[i]
		out = append(out, gatewayObject{id: placement.GatewayID{Kind: networking.KindAnthosNetworkGateway, Namespace: g.Namespace, Name: g.Name}, obj: g, spec: &g.Spec, status: &g.Status})
	}
	return out
}

// routingGateways are the gateways of both kinds as the routing decision reads them.
func routingGateways(groups []v1.NetworkGatewayGroup, legacy []v1alpha1.AnthosNetworkGateway) []routing.Gateway {
	out := make([]routing.Gateway, 0, len(groups)+len(legacy))
	for i := range groups {
		out = append(out, routing.GroupGateway(&groups[i]))
	}
	for i := range legacy {
		out = append(out, routing.LegacyGateway(&legacy[i]))
	}
	return out
}
