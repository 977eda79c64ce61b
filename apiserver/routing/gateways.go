package routing

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
)

// Gateway is a gateway of either kind as the decision sees it: the floating IPs of its
// spec, in order, and the node its status places each on.
type Gateway struct {
	Ref         networking.ObjectRef
	FloatingIPs []string
	Placed      map[string]string // IP → node, from status.floatingIPs
	Standbys    map[string]string // IP → node, from status.standbys
}

// GroupGateway and LegacyGateway read a gateway of each kind. They keep references to
// the object's slices and maps, which the decision only reads.
func GroupGateway(g *v1.NetworkGatewayGroup) Gateway {
	return Gateway{Ref: networking.ObjectRef{Kind: networking.KindNetworkGatewayGroup, Namespace: g.Namespace, Name: g.Name},
		FloatingIPs: g.Spec.FloatingIPs, Placed: g.Status.FloatingIPs, Standbys: g.Status.Standbys}
}

func LegacyGateway(g *v1alpha1.AnthosNetworkGateway) Gateway {
	return Gateway{Ref: networking.ObjectRef{Kind: networking.KindAnthosNetworkGateway, Namespace: g.Namespace, Name: g.Name},
		FloatingIPs: g.Spec.FloatingIPs, Placed: g.Status.FloatingIPs, Standbys: g.Status.Standbys}
}

// Gateways are every gateway of both kinds, indexed for the decision. It is the one
// lookup from API objects to what a policy resolves to, used by the controller (policy
// status), the node agent (dataplane tables) and the aggregated API (views).
//
// The rule for two gateways of different kinds with one namespace and name (a migration
// from AnthosNetworkGateway to NetworkGatewayGroup): a v1 policy's gatewayRef names a
// NetworkGatewayGroup, only ever; the AnthosNetworkGateway of that name is not its
// gateway. A policy written as v1alpha1 names its egress IP (egressSourceIP), which
// floating IPs' uniqueness across both kinds ties to one gateway.
type Gateways struct {
	items    []Gateway
	groups   map[[2]string][]string // NetworkGatewayGroup namespace/name → floating IPs
	legacy   map[[2]string]bool     // AnthosNetworkGateway namespace/name
	owner    map[string]networking.ObjectRef
	placed   map[string]string
	standbys map[string]string
}

// NewGateways indexes gateways. Where two list one IP (admission forbids it; placement
// gives it to the older), the owner shown is the first in kind, namespace and name order,
// so that every caller names the same one.
func NewGateways(gateways []Gateway) *Gateways {
	g := &Gateways{
		items:    slices.Clone(gateways),
		groups:   make(map[[2]string][]string, len(gateways)),
		legacy:   map[[2]string]bool{},
		owner:    make(map[string]networking.ObjectRef, 2*len(gateways)),
		placed:   make(map[string]string, 2*len(gateways)),
		standbys: map[string]string{},
	}
	slices.SortFunc(g.items, func(a, b Gateway) int {
		return cmp.Or(cmp.Compare(a.Ref.Kind, b.Ref.Kind), cmp.Compare(a.Ref.Namespace, b.Ref.Namespace), cmp.Compare(a.Ref.Name, b.Ref.Name))
	})
	for _, gw := range g.items {
		key := [2]string{gw.Ref.Namespace, gw.Ref.Name}
		switch gw.Ref.Kind {
		case networking.KindNetworkGatewayGroup:
			g.groups[key] = gw.FloatingIPs
		case networking.KindAnthosNetworkGateway:
			g.legacy[key] = true
		}
		for _, ip := range gw.FloatingIPs {
			if _, taken := g.owner[ip]; !taken {
				g.owner[ip] = gw.Ref
			}
			// Status places only the IPs the spec lists: a stale entry for a removed IP is
			// no placement.
			if node := gw.Placed[ip]; node != "" {
				g.placed[ip] = node
			}
			if node := gw.Standbys[ip]; node != "" {
				g.standbys[ip] = node
			}
		}
	}
	return g
}

// Items are the gateways, in kind, namespace and name order.
func (g *Gateways) Items() []Gateway { return g.items }

// Referenced returns the floating IPs of the NetworkGatewayGroup a gatewayRef names.
func (g *Gateways) Referenced(ref v1.GatewayReference) ([]string, bool) {
	ips, ok := g.groups[[2]string{ref.Namespace, ref.Name}]
	return ips, ok
}

// Placed is the node a gateway's status places ip on.
func (g *Gateways) Placed(ip string) (string, bool) {
	node, ok := g.placed[ip]
	return node, ok
}

// Standby is the node a gateway's status names as ip's standby.
func (g *Gateways) Standby(ip string) (string, bool) {
	node, ok := g.standbys[ip]
	return node, ok
}

// Owner is the gateway whose spec lists ip.
func (g *Gateways) Owner(ip string) (networking.ObjectRef, bool) {
	ref, ok := g.owner[ip]
	return ref, ok
}

// FloatingIPs are every gateway's valid IPv4 floating IPs, sorted, each once.
func (g *Gateways) FloatingIPs() []netip.Addr {
	var out []netip.Addr
	for _, gw := range g.items {
		for _, raw := range gw.FloatingIPs {
			if ip, err := netip.ParseAddr(raw); err == nil && ip.Is4() {
				out = append(out, ip)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
