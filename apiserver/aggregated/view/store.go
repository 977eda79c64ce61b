package view

import (
	"net/netip"
	"slices"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// DefaultWatchHistory is how many recent changes a watch can resume from.
const DefaultWatchHistory = 10000

// Store holds the cluster's state and the views computed from it. Feed it with the Set
// and Delete methods from informer event handlers; call Synced once the informers have
// listed everything. Before that it computes nothing and serves nothing.
type Store struct {
	mu sync.RWMutex
	in inputs
	d  derived

	synced bool
	// rv is the resourceVersion of the newest change: the etcd revision of the newest
	// input seen, or one more than the previous change when inputs arrive out of order.
	rv     uint64
	events *broadcaster
}

// inputs are the objects the views are computed from, as the informers deliver them.
// They are the informers' own objects: read, never written.
type inputs struct {
	clusterCIDRs []netip.Prefix
	pods         map[string]map[string]*podEntry // namespace → name
	namespaces   map[string]map[string]string    // name → labels
	nodes        map[string]nodeEntry
	policies     map[string]*v1.EgressNATPolicy
	gateways     map[networking.ObjectRef]routing.Gateway
	reports      map[string][]string // node → floating IPs its agent reports configured
	// redirected is, by node, the pods ("namespace/name") its agent reports with another
	// program on their interface: their selected traffic is dropped.
	redirected map[string][]string
	// copies is, by node, what its agent reports of its standbys' copies of its
	// connections.
	copies map[string][]v1.StandbyCopy
	// reach is, by node, what its agent reports about reaching egress IPs: its interface
	// subnets (never steered) and whether it has a router.
	reach   map[string]routing.NodeReach
	netpols map[string]map[string]*networkingv1.NetworkPolicy
}

type nodeEntry struct {
	ip netip.Addr
	// addrs are its InternalIPs and pod CIDRs, which are never steered.
	addrs routing.NodeAddresses
}

// podEntry is one pod and its view.
type podEntry struct {
	pod *corev1.Pod
	ip  netip.Addr
	// selected are the names of the policies that select the pod, in precedence order.
	selected []string
	view     *v1alpha1.PodEgress
}

// New returns an empty Store. clusterCIDRs are never steered (the service CIDRs); every
// Node's pod CIDRs and InternalIPs, and the subnets the agents report, are added to them,
// as the node agent adds them (routing.ClusterAddresses).
func New(clusterCIDRs []netip.Prefix, watchHistory int) *Store {
	if watchHistory <= 0 {
		watchHistory = DefaultWatchHistory
	}
	return &Store{
		in: inputs{
			clusterCIDRs: slices.Clone(clusterCIDRs),
			pods:         map[string]map[string]*podEntry{},
			namespaces:   map[string]map[string]string{},
			nodes:        map[string]nodeEntry{},
			policies:     map[string]*v1.EgressNATPolicy{},
			gateways:     map[networking.ObjectRef]routing.Gateway{},
			reports:      map[string][]string{},
			redirected:   map[string][]string{},
			copies:       map[string][]v1.StandbyCopy{},
			reach:        map[string]routing.NodeReach{},
			netpols:      map[string]map[string]*networkingv1.NetworkPolicy{},
		},
		d:      newDerived(),
		events: newBroadcaster(watchHistory),
	}
}

// Synced computes every view. Call it once, when the informers have synced.
func (s *Store) Synced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.synced {
		return
	}
	s.synced = true
	s.apply(change{all: true, cluster: true, recompile: true, heldBy: true, reselectAll: true}, 0)
}

// IsSynced reports whether Synced was called: until then the Store serves nothing.
func (s *Store) IsSynced() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.synced
}

// SetPod records a pod, added or updated.
func (s *Store) SetPod(p *corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.in.pods[p.Namespace]
	if ns == nil {
		ns = map[string]*podEntry{}
		s.in.pods[p.Namespace] = ns
	}
	e := ns[p.Name]
	if e == nil {
		e = &podEntry{}
		ns[p.Name] = e
	}
	old := e.pod
	s.d.unindexIP(e)
	e.pod, e.ip = p, routing.PodOf(p).IP
	s.d.indexIP(e)
	ch := change{pods: set(e)}
	if old == nil || !apiequality.Semantic.DeepEqual(old.Labels, p.Labels) || old.Spec.HostNetwork != p.Spec.HostNetwork {
		ch.reselect = set(e)
	}
	s.apply(ch, parseRV(p.ResourceVersion))
}

// DeletePod forgets a pod.
func (s *Store) DeletePod(p *corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.in.pods[p.Namespace][p.Name]
	if e == nil {
		return
	}
	delete(s.in.pods[p.Namespace], p.Name)
	if len(s.in.pods[p.Namespace]) == 0 {
		delete(s.in.pods, p.Namespace)
	}
	s.d.unindexIP(e)
	s.d.unselect(e)
	rv := s.nextRV(parseRV(p.ResourceVersion))
	if s.synced && e.view != nil {
		gone := e.view.DeepCopy()
		gone.ResourceVersion = strconv.FormatUint(rv, 10)
		s.events.send([]event{{rv: rv, typ: deleted, obj: gone, prev: e.view}})
	}
}

// SetNamespace records a namespace's labels, which policies select pods by.
func (s *Store) SetNamespace(n *corev1.Namespace) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, known := s.in.namespaces[n.Name]
	s.in.namespaces[n.Name] = n.Labels
	var ch change
	if !known || !apiequality.Semantic.DeepEqual(old, n.Labels) {
		ch.reselect = s.podsIn(n.Name)
	}
	s.apply(ch, parseRV(n.ResourceVersion))
}

// DeleteNamespace forgets a namespace's labels.
func (s *Store) DeleteNamespace(n *corev1.Namespace) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.in.namespaces, n.Name)
	s.apply(change{reselect: s.podsIn(n.Name)}, parseRV(n.ResourceVersion))
}

// SetNode records a node's InternalIP (what its pods are masqueraded to), and its
// InternalIPs and pod CIDRs (which are never steered).
func (s *Store) SetNode(n *corev1.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entry := nodeEntry{ip: internalIP(n), addrs: routing.NodeAddressesOf(n)}
	old, known := s.in.nodes[n.Name]
	s.in.nodes[n.Name] = entry
	var ch change
	if !known || old.ip != entry.ip {
		ch.pods = s.podsOn(n.Name)
	}
	if !known || !slices.Equal(old.addrs.PodCIDRs, entry.addrs.PodCIDRs) || !slices.Equal(old.addrs.InternalIPs, entry.addrs.InternalIPs) {
		ch.all, ch.cluster = true, true
	}
	s.apply(ch, parseRV(n.ResourceVersion))
}

// DeleteNode forgets a node.
func (s *Store) DeleteNode(n *corev1.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.in.nodes, n.Name)
	s.apply(change{all: true, cluster: true}, parseRV(n.ResourceVersion))
}

// SetPolicy records an EgressNATPolicy. Only its spec matters here: its status is the
// controller's copy of what this package computes itself.
func (s *Store) SetPolicy(p *v1.EgressNATPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.in.policies[p.Name]
	s.in.policies[p.Name] = p
	var ch change
	if old == nil || !old.CreationTimestamp.Equal(&p.CreationTimestamp) || !apiequality.Semantic.DeepEqual(old.Spec, p.Spec) {
		ch = s.policyChanged(p)
	}
	s.apply(ch, parseRV(p.ResourceVersion))
}

// DeletePolicy forgets an EgressNATPolicy.
func (s *Store) DeletePolicy(p *v1.EgressNATPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.in.policies, p.Name)
	s.apply(s.policyChanged(&v1.EgressNATPolicy{ObjectMeta: p.ObjectMeta}), parseRV(p.ResourceVersion))
}

// SetGateway records a gateway of either kind: its floating IPs, where they are placed,
// and their standbys.
func (s *Store) SetGateway(kind, namespace, name string, floatingIPs []string, placed, standbys map[string]string, resourceVersion string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := networking.ObjectRef{Kind: kind, Namespace: namespace, Name: name}
	s.in.gateways[ref] = routing.Gateway{Ref: ref, FloatingIPs: floatingIPs, Placed: placed, Standbys: standbys}
	s.apply(change{recompile: true}, parseRV(resourceVersion))
}

// DeleteGateway forgets a gateway.
func (s *Store) DeleteGateway(kind, namespace, name, resourceVersion string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.in.gateways, networking.ObjectRef{Kind: kind, Namespace: namespace, Name: name})
	s.apply(change{recompile: true}, parseRV(resourceVersion))
}

// SetNodeReport records the floating IPs a node's agent reports configured, the subnets
// of its interfaces (which are never steered), and whether it has a router.
func (s *Store) SetNodeReport(r *v1.NetworkGatewayNode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Namespace != networking.NodeNamespace {
		return
	}
	s.in.reports[r.Name] = r.Status.FloatingIPs
	s.in.copies[r.Name] = r.Status.StandbyCopies
	ch := change{heldBy: true}
	reach := routing.ReachOf(&r.Status)
	if old, known := s.in.reach[r.Name]; !known || !slices.Equal(old.Subnets, reach.Subnets) || old.Routed != reach.Routed {
		s.in.reach[r.Name] = reach
		ch.all, ch.cluster = true, true
	}
	if !slices.Equal(s.in.redirected[r.Name], r.Status.RedirectedPods) {
		s.in.redirected[r.Name] = slices.Clone(r.Status.RedirectedPods)
		ch.all = true
	}
	s.apply(ch, parseRV(r.ResourceVersion))
}

// DeleteNodeReport forgets a node's report.
func (s *Store) DeleteNodeReport(r *v1.NetworkGatewayNode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Namespace != networking.NodeNamespace {
		return
	}
	delete(s.in.reports, r.Name)
	delete(s.in.reach, r.Name)
	delete(s.in.redirected, r.Name)
	delete(s.in.copies, r.Name)
	s.apply(change{heldBy: true, all: true, cluster: true}, parseRV(r.ResourceVersion))
}

// SetNetworkPolicy records a NetworkPolicy, which previews evaluate first.
func (s *Store) SetNetworkPolicy(np *networkingv1.NetworkPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.in.netpols[np.Namespace]
	if ns == nil {
		ns = map[string]*networkingv1.NetworkPolicy{}
		s.in.netpols[np.Namespace] = ns
	}
	ns[np.Name] = np
	s.apply(change{}, parseRV(np.ResourceVersion))
}

// DeleteNetworkPolicy forgets a NetworkPolicy.
func (s *Store) DeleteNetworkPolicy(np *networkingv1.NetworkPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.in.netpols[np.Namespace], np.Name)
	s.apply(change{}, parseRV(np.ResourceVersion))
}

func (s *Store) podsIn(namespace string) map[*podEntry]struct{} {
	out := map[*podEntry]struct{}{}
	for _, e := range s.in.pods[namespace] {
		out[e] = struct{}{}
	}
	return out
}

func (s *Store) podsOn(node string) map[*podEntry]struct{} {
	out := map[*podEntry]struct{}{}
	for _, ns := range s.in.pods {
		for _, e := range ns {
			if e.pod.Spec.NodeName == node {
				out[e] = struct{}{}
			}
		}
	}
	return out
}

// nextRV is the resourceVersion of a change caused by an input at inputRV.
func (s *Store) nextRV(inputRV uint64) uint64 {
	if inputRV > s.rv {
		s.rv = inputRV
	} else {
		s.rv++
	}
	return s.rv
}

func parseRV(rv string) uint64 {
	n, _ := strconv.ParseUint(rv, 10, 64)
	return n
}

func set(e *podEntry) map[*podEntry]struct{} { return map[*podEntry]struct{}{e: {}} }

func internalIP(n *corev1.Node) netip.Addr {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
			return ip
		}
	}
	return netip.Addr{}
}
