package webhook

import (
	"context"
	"errors"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	"github.com/egressgw/egressgw/webhook/validation"
)

// Field indexes on the informer caches. Every lookup validation makes is one of these.
const (
	indexFloatingIP     = "egressgw.floatingIP"     // gateways (both kinds) by spec.floatingIPs
	indexGatewayRef     = "egressgw.gatewayRef"     // policies by spec.gatewayRef, "namespace/name"
	indexEgressSourceIP = "egressgw.egressSourceIP" // policies by spec.egressSourceIP
	indexAddress        = "egressgw.address"        // nodes and node reports by their own addresses
	indexRouter         = "egressgw.router"         // node reports by the routers they report
	indexServedPod      = "egressgw.servedPod"      // node reports by the pod addresses they serve
)

// RegisterIndexes adds the field indexes that requestIndex reads to a cache.
func RegisterIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	floatingIPs := func(spec *v1.NetworkGatewayGroupSpec) []string { return spec.FloatingIPs }
	return errors.Join(
		indexer.IndexField(ctx, &v1.NetworkGatewayGroup{}, indexFloatingIP, func(o client.Object) []string {
			return floatingIPs(&o.(*v1.NetworkGatewayGroup).Spec)
		}),
		indexer.IndexField(ctx, &v1alpha1.AnthosNetworkGateway{}, indexFloatingIP, func(o client.Object) []string {
			return floatingIPs(&o.(*v1alpha1.AnthosNetworkGateway).Spec)
		}),
		indexer.IndexField(ctx, &v1.EgressNATPolicy{}, indexGatewayRef, func(o client.Object) []string {
			if ref := o.(*v1.EgressNATPolicy).Spec.GatewayRef; ref != nil {
				return []string{ref.Namespace + "/" + ref.Name}
			}
			return nil
		}),
		indexer.IndexField(ctx, &v1.EgressNATPolicy{}, indexEgressSourceIP, func(o client.Object) []string {
			if ip := o.(*v1.EgressNATPolicy).Spec.EgressSourceIP; ip != "" {
				return []string{ip}
			}
			return nil
		}),
		indexer.IndexField(ctx, &corev1.Node{}, indexAddress, func(o client.Object) []string {
			var ips []string
			for _, a := range o.(*corev1.Node).Status.Addresses {
				if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
					ips = append(ips, a.Address)
				}
			}
			return ips
		}),
		indexer.IndexField(ctx, &v1.NetworkGatewayNode{}, indexAddress, func(o client.Object) []string {
			return nodeReport(o, func(p netip.Prefix) string { return p.Addr().String() })
		}),
		indexer.IndexField(ctx, &v1.NetworkGatewayNode{}, indexServedPod, func(o client.Object) []string {
			var out []string
			for _, raw := range o.(*v1.NetworkGatewayNode).Status.ServedPodAddresses {
				if p, err := netip.ParsePrefix(raw); err == nil && p.Bits() == 32 {
					out = append(out, p.Addr().String())
				}
			}
			return out
		}),
		indexer.IndexField(ctx, &v1.NetworkGatewayNode{}, indexRouter, func(o client.Object) []string {
			var out []string
			for _, iface := range o.(*v1.NetworkGatewayNode).Status.Interfaces {
				out = append(out, iface.Routers...)
			}
			return out
		}),
	)
}

// nodeReport maps the subnets a node agent reported, skipping ones that do not parse.
func nodeReport(o client.Object, f func(netip.Prefix) string) []string {
	var out []string
	for _, iface := range o.(*v1.NetworkGatewayNode).Status.Interfaces {
		for _, s := range iface.Subnets {
			if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
				out = append(out, f(p))
			}
		}
	}
	return out
}

// requestIndex answers one admission request's lookups from the cache. The first lookup
// error is kept, and the request is refused with it.
type requestIndex struct {
	ctx     context.Context
	reader  client.Reader
	subnets *subnetSet
	err     error
}

var _ validation.Index = &requestIndex{}

func newRequestIndex(ctx context.Context, reader client.Reader, subnets *subnetSet) *requestIndex {
	return &requestIndex{ctx: ctx, reader: reader, subnets: subnets}
}

func (r *requestIndex) list(list client.ObjectList, opts ...client.ListOption) bool {
	if r.err != nil {
		return false
	}
	// Only names and specs are read, never changed: the cache's objects can be shared.
	r.err = r.reader.List(r.ctx, list, append(opts, client.UnsafeDisableDeepCopy)...)
	return r.err == nil
}

func (r *requestIndex) GatewaysWithFloatingIP(ip string) []validation.ObjectRef {
	var refs []validation.ObjectRef
	var groups v1.NetworkGatewayGroupList
	if r.list(&groups, client.MatchingFields{indexFloatingIP: ip}) {
		for _, g := range groups.Items {
			refs = append(refs, validation.ObjectRef{Kind: validation.KindNetworkGatewayGroup, Namespace: g.Namespace, Name: g.Name})
		}
	}
	var legacy v1alpha1.AnthosNetworkGatewayList
	if r.list(&legacy, client.MatchingFields{indexFloatingIP: ip}) {
		for _, g := range legacy.Items {
			refs = append(refs, validation.ObjectRef{Kind: validation.KindAnthosNetworkGateway, Namespace: g.Namespace, Name: g.Name})
		}
	}
	return refs
}

func (r *requestIndex) NetworkGatewayGroup(namespace, name string) ([]string, bool) {
	var g v1.NetworkGatewayGroup
	if !r.get(namespace, name, &g) {
		return nil, false
	}
	return g.Spec.FloatingIPs, true
}

func (r *requestIndex) AnthosNetworkGatewayExists(namespace, name string) bool {
	return r.get(namespace, name, &v1alpha1.AnthosNetworkGateway{})
}

func (r *requestIndex) get(namespace, name string, obj client.Object) bool {
	if r.err != nil {
		return false
	}
	err := r.reader.Get(r.ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj)
	if client.IgnoreNotFound(err) != nil {
		r.err = err
	}
	return err == nil
}

func (r *requestIndex) policies(field, value string) []string {
	var list v1.EgressNATPolicyList
	if !r.list(&list, client.MatchingFields{field: value}) {
		return nil
	}
	names := make([]string, 0, len(list.Items))
	for _, p := range list.Items {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

func (r *requestIndex) PoliciesWithEgressSourceIP(ip string) []string {
	return r.policies(indexEgressSourceIP, ip)
}

func (r *requestIndex) PoliciesReferencing(namespace, name string) []string {
	return r.policies(indexGatewayRef, namespace+"/"+name)
}

func (r *requestIndex) NodeWithAddress(ip string) (string, bool) {
	var nodes corev1.NodeList
	if r.list(&nodes, client.MatchingFields{indexAddress: ip}) && len(nodes.Items) > 0 {
		return nodes.Items[0].Name, true
	}
	var reports v1.NetworkGatewayNodeList
	if r.list(&reports, client.MatchingFields{indexAddress: ip}) && len(reports.Items) > 0 {
		return reports.Items[0].Name, true
	}
	return "", false
}

func (r *requestIndex) RouterOf(ip string) (string, bool) {
	return r.reportWith(indexRouter, ip)
}

func (r *requestIndex) NodeServingPod(ip string) (string, bool) {
	return r.reportWith(indexServedPod, ip)
}

// reportWith returns the name of a node report that the field index lists under value.
func (r *requestIndex) reportWith(index, value string) (string, bool) {
	var reports v1.NetworkGatewayNodeList
	if r.list(&reports, client.MatchingFields{index: value}) && len(reports.Items) > 0 {
		return reports.Items[0].Name, true
	}
	return "", false
}

func (r *requestIndex) NodeSubnetsContaining(ip netip.Addr) []netip.Prefix {
	return r.subnets.Containing(ip)
}

// ClusterCIDRs are the configured ranges, the Nodes' pod CIDRs and the reported subnets,
// all kept by informer events.
func (r *requestIndex) ClusterCIDRs() []validation.ClusterCIDR {
	return r.subnets.ClusterCIDRs()
}

func (r *requestIndex) NodeSubnetContains(ip netip.Addr) bool {
	return r.subnets.Contains(ip)
}

// cacheThenLive reads from the cache, and asks the API server before it answers "not
// found": a gateway and the policy that names it, applied together (`kubectl apply -f
// dir/`), must not race the cache.
type cacheThenLive struct {
	client.Reader // the cache
	live          client.Reader
}

func (r cacheThenLive) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := r.Reader.Get(ctx, key, obj, opts...)
	if apierrors.IsNotFound(err) {
		return r.live.Get(ctx, key, obj, opts...)
	}
	return err
}
