package nodeagent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	netv1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	netinformers "github.com/egressgw/egressgw/apiserver/client/informers/externalversions"
	v1listers "github.com/egressgw/egressgw/apiserver/client/listers/networking/v1"
	v1alpha1listers "github.com/egressgw/egressgw/apiserver/client/listers/networking/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// caches are the informers the agent reads: policies, gateways of both kinds, namespaces,
// and only this node's pods.
type caches struct {
	core    informers.SharedInformerFactory
	pods    informers.SharedInformerFactory
	net     netinformers.SharedInformerFactory
	podList corelisters.PodLister
	nsList  corelisters.NamespaceLister
	node    corelisters.NodeLister
	policy  v1listers.EgressNATPolicyLister
	groups  v1listers.NetworkGatewayGroupLister
	legacy  v1alpha1listers.AnthosNetworkGatewayLister
	own     netinformers.SharedInformerFactory // this node's NetworkGatewayNode only
	grants  v1listers.NetworkGatewayNodeLister
	// leader is the controller's leader election Lease, whose holder names the address
	// heartbeats go to; nil without the direct channel.
	leader     informers.SharedInformerFactory
	leaderList coordinationlisters.LeaseLister
	leaderName string

	// Objects read straight from the API server because an informer was behind (it
	// reconnects with a backoff after an API server restart); used while newer.
	mu           sync.Mutex
	ownDirect    *netv1.NetworkGatewayNode
	leaderDirect *coordinationv1.Lease
}

func newCaches(kube kubernetes.Interface, net versioned.Interface, node string, onChange cache.ResourceEventHandler) (*caches, error) {
	c := &caches{
		core: informers.NewSharedInformerFactory(kube, 0),
		pods: informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		})),
		net: netinformers.NewSharedInformerFactory(net, 0),
		own: netinformers.NewSharedInformerFactoryWithOptions(net, 0, netinformers.WithNamespace(networking.NodeNamespace),
			netinformers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", node).String()
			})),
	}
	register := []cache.SharedIndexInformer{
		c.pods.Core().V1().Pods().Informer(),
		c.core.Core().V1().Namespaces().Informer(),
		c.core.Core().V1().Nodes().Informer(),
		c.net.Networking().V1().EgressNATPolicies().Informer(),
		c.net.Networking().V1().NetworkGatewayGroups().Informer(),
		c.net.Networking().V1alpha1().AnthosNetworkGateways().Informer(),
		c.own.Networking().V1().NetworkGatewayNodes().Informer(),
	}
	for _, inf := range register {
		if _, err := inf.AddEventHandler(onChange); err != nil {
			return nil, fmt.Errorf("watching: %w", err)
		}
	}
	c.podList = c.pods.Core().V1().Pods().Lister()
	c.nsList = c.core.Core().V1().Namespaces().Lister()
	c.node = c.core.Core().V1().Nodes().Lister()
	c.policy = c.net.Networking().V1().EgressNATPolicies().Lister()
	c.groups = c.net.Networking().V1().NetworkGatewayGroups().Lister()
	c.legacy = c.net.Networking().V1alpha1().AnthosNetworkGateways().Lister()
	c.grants = c.own.Networking().V1().NetworkGatewayNodes().Lister()
	return c, nil
}

// watchLeader adds the controller's leader election Lease, namespace/name.
func (c *caches) watchLeader(kube kubernetes.Interface, lease string) error {
	ns, name, ok := strings.Cut(lease, "/")
	if !ok || ns == "" || name == "" {
		return fmt.Errorf("--controller-lease %q must be namespace/name", lease)
	}
	c.leader = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	c.leaderList = c.leader.Coordination().V1().Leases().Lister()
	c.leaderName = name
	return nil
}

// leaderAddr is where the leader takes heartbeats: the address after the last "@" in
// its Lease's holder identity.
func (c *caches) leaderAddr() (netip.AddrPort, bool) {
	if c.leaderList == nil {
		return netip.AddrPort{}, false
	}
	var lease *coordinationv1.Lease
	if leases, err := c.leaderList.List(labels.Everything()); err == nil {
		for _, l := range leases {
			if l.Name == c.leaderName {
				lease = l
			}
		}
	}
	c.mu.Lock()
	if newer(c.leaderDirect, lease) {
		lease = c.leaderDirect
	}
	c.mu.Unlock()
	if lease == nil || lease.Spec.HolderIdentity == nil {
		return netip.AddrPort{}, false
	}
	id := *lease.Spec.HolderIdentity
	at := strings.LastIndexByte(id, '@')
	if at < 0 {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(id[at+1:])
	return ap, err == nil
}

// own is this node's NetworkGatewayNode: the informer's, or a newer one read directly.
func (c *caches) ownReport(node string) *netv1.NetworkGatewayNode {
	own, err := c.grants.NetworkGatewayNodes(networking.NodeNamespace).Get(node)
	if err != nil {
		own = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ownDirect != nil && (own == nil || c.ownDirect.Generation > own.Generation) {
		return c.ownDirect
	}
	return own
}

// grantGeneration is the generation of this node's grants; 0 if none.
func (c *caches) grantGeneration(node string) int64 {
	if own := c.ownReport(node); own != nil {
		return own.Generation
	}
	return 0
}

// readOwn reads this node's NetworkGatewayNode from the API server, and reports whether
// it is newer than what the agent had.
func (c *caches) readOwn(ctx context.Context, net versioned.Interface, node string) (bool, error) {
	before := c.grantGeneration(node)
	own, err := net.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace).Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	c.ownDirect = own
	c.mu.Unlock()
	return own.Generation > before, nil
}

// readLeader reads the controller's leader election Lease from the API server, and
// reports whether its holder differs from the one the agent sent heartbeats to.
func (c *caches) readLeader(ctx context.Context, kube kubernetes.Interface, lease string) (bool, error) {
	ns, name, _ := strings.Cut(lease, "/")
	before, _ := c.leaderAddr()
	l, err := kube.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	c.leaderDirect = l
	c.mu.Unlock()
	after, _ := c.leaderAddr()
	return after != before, nil
}

// newer says whether a is a later version of the Lease than b.
func newer(a, b *coordinationv1.Lease) bool {
	if a == nil {
		return false
	}
	if b == nil {
		return true
	}
	av, aerr := strconv.ParseUint(a.ResourceVersion, 10, 64)
	bv, berr := strconv.ParseUint(b.ResourceVersion, 10, 64)
	return aerr == nil && berr == nil && av > bv
}

func (c *caches) start(ctx context.Context, timeout time.Duration) error {
	c.core.Start(ctx.Done())
	c.pods.Start(ctx.Done())
	c.net.Start(ctx.Done())
	c.own.Start(ctx.Done())
	if c.leader != nil {
		c.leader.Start(ctx.Done())
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for typ, ok := range c.core.WaitForCacheSync(wctx.Done()) {
		if !ok {
			return fmt.Errorf("the %v cache did not sync within %s", typ, timeout)
		}
	}
	if c.leader != nil {
		for typ, ok := range c.leader.WaitForCacheSync(wctx.Done()) {
			if !ok {
				return fmt.Errorf("the %v cache did not sync within %s", typ, timeout)
			}
		}
	}
	for typ, ok := range c.pods.WaitForCacheSync(wctx.Done()) {
		if !ok {
			return fmt.Errorf("the %v cache did not sync within %s", typ, timeout)
		}
	}
	for _, f := range []netinformers.SharedInformerFactory{c.net, c.own} {
		for typ, ok := range f.WaitForCacheSync(wctx.Done()) {
			if !ok {
				return fmt.Errorf("the %v cache did not sync within %s", typ, timeout)
			}
		}
	}
	return nil
}

func (c *caches) snapshot(o Options) (snapshot, error) {
	s := snapshot{node: o.NodeName, namespaces: map[string]map[string]string{}, cluster: o.parsed.clusterCIDRs}
	var err error
	if s.policies, err = c.policy.List(labels.Everything()); err != nil {
		return s, err
	}
	if s.pods, err = c.podList.List(labels.Everything()); err != nil {
		return s, err
	}
	nss, err := c.nsList.List(labels.Everything())
	if err != nil {
		return s, err
	}
	for _, ns := range nss {
		s.namespaces[ns.Name] = ns.Labels
	}
	groups, err := c.groups.List(labels.Everything())
	if err != nil {
		return s, err
	}
	for _, g := range groups {
		s.gateways = append(s.gateways, routing.GroupGateway(g))
	}
	legacy, err := c.legacy.List(labels.Everything())
	if err != nil {
		return s, err
	}
	for _, g := range legacy {
		s.gateways = append(s.gateways, routing.LegacyGateway(g))
	}
	// The controller grants this node its floating IPs in its NetworkGatewayNode's spec.
	if own := c.ownReport(o.NodeName); own != nil {
		s.granted, s.generation = own.Spec.FloatingIPs, own.Generation
	}
	// Every node's pod CIDRs are in-cluster destinations, never steered.
	nodes, err := c.node.List(labels.Everything())
	if err != nil {
		return s, err
	}
	s.cluster = append([]netip.Prefix(nil), o.parsed.clusterCIDRs...)
	s.podCIDRs = o.parsed.podCIDRs
	for _, n := range nodes {
		s.cluster = append(s.cluster, routing.NodePodCIDRs(n)...)
		if n.Name == o.NodeName && len(o.parsed.podCIDRs) == 0 {
			s.podCIDRs = routing.NodePodCIDRs(n)
		}
	}
	// The informer lists nodes in no fixed order: sorted, the nft table renders the same
	// on every pass and is rewritten only when a CIDR really changes.
	s.cluster = routing.SortPrefixes(s.cluster)
	s.podCIDRs = routing.SortPrefixes(slices.Clone(s.podCIDRs))
	return s, nil
}
