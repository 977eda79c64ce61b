package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	netinformers "github.com/egressgw/egressgw/apiserver/client/informers/externalversions"
	v1listers "github.com/egressgw/egressgw/apiserver/client/listers/networking/v1"
	v1alpha1listers "github.com/egressgw/egressgw/apiserver/client/listers/networking/v1alpha1"
	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// caches are the informers the agent reads: policies, gateways of both kinds, namespaces,
// nodes, only this node's pods and NetworkGatewayNode, and with the direct channel the
// controller's leader election Lease.
type caches struct {
	scope     scope
	factories []informerFactory
	// watched are the informers whose changes call for a pass; reports (every node's
	// NetworkGatewayNode) calls for one only when what a pass learns from it changes.
	watched []cache.SharedIndexInformer
	reports cache.SharedIndexInformer
	list    listers
	own     *ownNode
	leader  *leaderLease // nil without the direct channel
}

var (
	_ clusterView = &caches{}
	_ directReads = &caches{}
)

// scope is what of the options a snapshot reads.
type scope struct {
	node string
	// clusterCIDRs are never steered; podCIDRs are this node's, from the Node if none.
	clusterCIDRs, podCIDRs []netip.Prefix
}

// listers are what a snapshot lists.
type listers struct {
	pods       corelisters.PodLister
	namespaces corelisters.NamespaceLister
	nodes      corelisters.NodeLister
	policies   v1listers.EgressNATPolicyLister
	groups     v1listers.NetworkGatewayGroupLister
	legacy     v1alpha1listers.AnthosNetworkGatewayLister
	// reports are every node's NetworkGatewayNode: the subnets and served pod addresses
	// their agents report.
	reports v1listers.NetworkGatewayNodeLister
}

// informerFactory is what Start needs of either informer factory.
type informerFactory interface {
	Start(stopCh <-chan struct{})
	WaitForCacheSync(stopCh <-chan struct{}) map[reflect.Type]bool
}

// newCaches builds the informers for opts's node, and with --controller-lease the one of
// the controller's leader election Lease.
func newCaches(kube kubernetes.Interface, net versioned.Interface, opts *Options) *caches {
	node := opts.NodeName
	core := informers.NewSharedInformerFactory(kube, 0)
	pods := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	}))
	nets := netinformers.NewSharedInformerFactory(net, 0)
	reports := netinformers.NewSharedInformerFactoryWithOptions(net, 0, netinformers.WithNamespace(networking.NodeNamespace))
	own := netinformers.NewSharedInformerFactoryWithOptions(net, 0, netinformers.WithNamespace(networking.NodeNamespace),
		netinformers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", node).String()
		}))
	c := &caches{
		scope:     scope{node: node, clusterCIDRs: opts.parsed.clusterCIDRs, podCIDRs: opts.parsed.podCIDRs},
		factories: []informerFactory{core, pods, nets, own, reports},
		watched: []cache.SharedIndexInformer{
			pods.Core().V1().Pods().Informer(),
			core.Core().V1().Namespaces().Informer(),
			core.Core().V1().Nodes().Informer(),
			nets.Networking().V1().EgressNATPolicies().Informer(),
			nets.Networking().V1().NetworkGatewayGroups().Informer(),
			nets.Networking().V1alpha1().AnthosNetworkGateways().Informer(),
			own.Networking().V1().NetworkGatewayNodes().Informer(),
		},
		reports: reports.Networking().V1().NetworkGatewayNodes().Informer(),
		list: listers{
			pods:       pods.Core().V1().Pods().Lister(),
			namespaces: core.Core().V1().Namespaces().Lister(),
			nodes:      core.Core().V1().Nodes().Lister(),
			policies:   nets.Networking().V1().EgressNATPolicies().Lister(),
			groups:     nets.Networking().V1().NetworkGatewayGroups().Lister(),
			legacy:     nets.Networking().V1alpha1().AnthosNetworkGateways().Lister(),
			reports:    reports.Networking().V1().NetworkGatewayNodes().Lister(),
		},
		own: &ownNode{list: own.Networking().V1().NetworkGatewayNodes().Lister(), client: net, name: node},
	}
	if ns, name := opts.parsed.leaseNamespace, opts.parsed.leaseName; name != "" {
		leader := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			}))
		c.leader = &leaderLease{list: leader.Coordination().V1().Leases().Lister(), client: kube, namespace: ns, name: name}
		c.factories = append(c.factories, leader)
	}
	return c
}

// Start registers onChange, starts the informers and waits a minute at most for them to
// sync.
func (c *caches) Start(ctx context.Context, onChange func()) error {
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}
	for _, inf := range c.watched {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watching: %w", err)
		}
	}
	// Every node's report changes with its grants, heartbeat keys and conditions; a pass
	// needs only what it learns from them (routing.ReportAddressesOf).
	learned := handler
	learned.UpdateFunc = func(old, obj any) {
		o, ok1 := old.(*v1.NetworkGatewayNode)
		n, ok2 := obj.(*v1.NetworkGatewayNode)
		// A pass learns a node's addresses, and, for the conntrack copy, its heartbeat
		// keys: a standby that restarted seals with a new key, and its holders must
		// follow at once, not at the next resync.
		if !ok1 || !ok2 || !reflect.DeepEqual(routing.ReportAddressesOf(&o.Status), routing.ReportAddressesOf(&n.Status)) ||
			!slices.Equal(o.Status.HeartbeatKeys, n.Status.HeartbeatKeys) {
			onChange()
		}
	}
	if _, err := c.reports.AddEventHandler(learned); err != nil {
		return fmt.Errorf("watching: %w", err)
	}
	for _, f := range c.factories {
		f.Start(ctx.Done())
	}
	const timeout = time.Minute
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, f := range c.factories {
		for typ, ok := range f.WaitForCacheSync(wctx.Done()) {
			if !ok {
				return fmt.Errorf("the %v cache did not sync within %s", typ, timeout)
			}
		}
	}
	return nil
}

func (c *caches) GrantGeneration() int64 { return c.own.generation() }

func (c *caches) Leader() (hb.Leader, bool) {
	if c.leader == nil {
		return hb.Leader{}, false
	}
	return c.leader.leader()
}

func (c *caches) ReadGrants(ctx context.Context) (bool, error) { return c.own.read(ctx) }

func (c *caches) ReadLeader(ctx context.Context) (bool, error) {
	if c.leader == nil {
		return false, errors.New("no --controller-lease, so no leader to read")
	}
	return c.leader.read(ctx)
}

func (c *caches) Snapshot() (snapshot, error) {
	o := c.scope
	s := snapshot{node: o.node, namespaces: map[string]map[string]string{}, cluster: o.clusterCIDRs}
	var err error
	if s.policies, err = c.list.policies.List(labels.Everything()); err != nil {
		return s, err
	}
	if s.pods, err = c.list.pods.List(labels.Everything()); err != nil {
		return s, err
	}
	nss, err := c.list.namespaces.List(labels.Everything())
	if err != nil {
		return s, err
	}
	for _, ns := range nss {
		s.namespaces[ns.Name] = ns.Labels
	}
	groups, err := c.list.groups.List(labels.Everything())
	if err != nil {
		return s, err
	}
	for _, g := range groups {
		s.gateways = append(s.gateways, routing.GroupGateway(g))
	}
	legacy, err := c.list.legacy.List(labels.Everything())
	if err != nil {
		return s, err
	}
	for _, g := range legacy {
		s.gateways = append(s.gateways, routing.LegacyGateway(g))
	}
	// The controller grants this node its floating IPs in its NetworkGatewayNode's spec.
	if own := c.own.get(); own != nil {
		s.granted, s.generation = own.Spec.FloatingIPs, own.Generation
	}
	// Every node's pod CIDRs, addresses and reported subnets are in-cluster destinations,
	// never steered; its pod CIDRs and the pod addresses it reports serving are the sources
	// a gateway SNATs from.
	nodes, err := c.list.nodes.List(labels.Everything())
	if err != nil {
		return s, err
	}
	s.addresses.Configured = o.clusterCIDRs
	s.podCIDRs = o.podCIDRs
	s.peers = map[string]peer{}
	for _, n := range nodes {
		a := routing.NodeAddressesOf(n)
		p := peer{internalIPs: a.InternalIPs}
		if r, err := c.list.reports.NetworkGatewayNodes(networking.NodeNamespace).Get(n.Name); err == nil {
			report := routing.ReportAddressesOf(&r.Status)
			a.Interfaces, a.Served = report.Interfaces, report.Served
			p.keys = r.Status.HeartbeatKeys
		}
		s.peers[n.Name] = p
		if n.Name == o.node {
			if len(o.podCIDRs) == 0 {
				s.podCIDRs = a.PodCIDRs
			}
			s.nodeIPs = a.InternalIPs
			// This node's served addresses are the pass's to learn from its pods
			// (coverage.go), not its last report's.
			a.Served = nil
		}
		s.addresses.Nodes = append(s.addresses.Nodes, a)
	}
	// The informer lists nodes in no fixed order: sorted, the nft table renders the same
	// on every pass and is rewritten only when a CIDR really changes.
	s.cluster = s.addresses.NeverSteered()
	s.podCIDRs = routing.SortPrefixes(slices.Clone(s.podCIDRs))
	// --pod-cidrs may name pod CIDRs the Node does not.
	s.allPodCIDRs = routing.SortPrefixes(append(s.addresses.PodSources(), s.podCIDRs...))
	return s, nil
}
