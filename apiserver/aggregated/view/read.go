package view

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/egressgw/egressgw/apiserver/aggregated/netpolicy"
	"github.com/egressgw/egressgw/apiserver/aggregated/preview"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

// Views are never changed once computed (a change makes a new one), so readers get
// shallow copies, as from kube-apiserver's watch cache: the copy is theirs to set the
// kind on while encoding, and everything below it is read-only.
func shallow(v *v1alpha1.PodEgress) *v1alpha1.PodEgress {
	c := *v
	return &c
}

// Matcher reports whether a view is wanted; nil wants every view.
type Matcher func(*v1alpha1.PodEgress) bool

// WatchOptions say where a watch starts.
type WatchOptions struct {
	// ResourceVersion: "" or "0" starts with every current view as added; a number
	// resumes after it.
	ResourceVersion string
	// SendInitialEvents starts with every current view, then a bookmark that ends them
	// if Bookmarks is set.
	SendInitialEvents bool
	Bookmarks         bool
}

var pods = schema.GroupResource{Resource: "pods"}

func (s *Store) ready() error {
	if !s.synced {
		return apierrors.NewServiceUnavailable("the egress views are not ready: the informer caches are still syncing")
	}
	return nil
}

// PodEgress returns the view of one pod, or NotFound.
func (s *Store) PodEgress(namespace, name string) (*v1alpha1.PodEgress, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.ready(); err != nil {
		return nil, err
	}
	e := s.in.pods[namespace][name]
	if e == nil || e.view == nil {
		return nil, apierrors.NewNotFound(v1alpha1.Resource("podegresses"), name)
	}
	return shallow(e.view), nil
}

// PodEgresses lists the views of a namespace's pods (every namespace for ""), by name.
func (s *Store) PodEgresses(namespace string, match Matcher) (*v1alpha1.PodEgressList, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.ready(); err != nil {
		return nil, err
	}
	list := &v1alpha1.PodEgressList{}
	list.ResourceVersion = strconv.FormatUint(s.rv, 10)
	namespaces := s.namespacesOf(namespace)
	if match == nil { // Every view is wanted: one allocation for the copies.
		n := 0
		for _, ns := range namespaces {
			n += len(s.in.pods[ns])
		}
		list.Items = make([]v1alpha1.PodEgress, 0, n)
	}
	for _, ns := range namespaces {
		names := make([]string, 0, len(s.in.pods[ns]))
		for name := range s.in.pods[ns] {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if v := s.in.pods[ns][name].view; v != nil && (match == nil || match(v)) {
				list.Items = append(list.Items, *v)
			}
		}
	}
	return list, nil
}

func (s *Store) namespacesOf(namespace string) []string {
	if namespace != "" {
		return []string{namespace}
	}
	out := make([]string, 0, len(s.in.pods))
	for ns := range s.in.pods {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out
}

// WatchPodEgresses watches the views of a namespace's pods (every namespace for "").
func (s *Store) WatchPodEgresses(namespace string, opts WatchOptions, match Matcher) (watch.Interface, error) {
	if match == nil {
		match = func(*v1alpha1.PodEgress) bool { return true }
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return nil, err
	}
	w := &watcher{
		namespace: namespace, match: match,
		queue: make(chan event, watchQueue), behind: make(chan struct{}), result: make(chan watch.Event), done: make(chan struct{}),
		remove: func(w *watcher) {
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(s.events.watchers, w)
		},
	}
	switch rv := opts.ResourceVersion; {
	case opts.SendInitialEvents || rv == "" || rv == "0":
		for _, ns := range s.namespacesOf(namespace) {
			for _, e := range s.in.pods[ns] {
				if e.view != nil {
					w.initial = append(w.initial, event{typ: added, obj: e.view})
				}
			}
		}
		if opts.SendInitialEvents && opts.Bookmarks {
			w.bookmark = initialEventsEnd(strconv.FormatUint(s.rv, 10))
		}
	default:
		n, err := strconv.ParseUint(rv, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("resourceVersion %q is not a number", rv))
		}
		events, ok := s.events.since(n)
		if !ok {
			return nil, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", n, s.events.evicted))
		}
		w.initial = events
	}
	s.events.watchers[w] = struct{}{}
	go w.run()
	return w, nil
}

// knownPolicy says why the Store cannot answer for the policy name: not ready, or
// NotFound. The caller holds s.mu.
func (s *Store) knownPolicy(name string) error {
	if err := s.ready(); err != nil {
		return err
	}
	if _, ok := s.d.entries[name]; !ok {
		return apierrors.NewNotFound(v1alpha1.Resource("egresspolicyviews"), name)
	}
	return nil
}

// PolicyView returns the view of one EgressNATPolicy, or NotFound.
func (s *Store) PolicyView(name string) (*v1alpha1.EgressPolicyView, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.knownPolicy(name); err != nil {
		return nil, err
	}
	return s.policyView(name), nil
}

// PolicyViews lists the views of every EgressNATPolicy, by name.
func (s *Store) PolicyViews() (*v1alpha1.EgressPolicyViewList, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.ready(); err != nil {
		return nil, err
	}
	list := &v1alpha1.EgressPolicyViewList{}
	list.ResourceVersion = strconv.FormatUint(s.rv, 10)
	names := make([]string, 0, len(s.d.entries))
	for name := range s.d.entries {
		names = append(names, name)
	}
	slices.Sort(names)
	list.Items = make([]v1alpha1.EgressPolicyView, 0, len(names))
	for _, name := range names {
		list.Items = append(list.Items, *s.policyView(name))
	}
	return list, nil
}

// PolicyPods lists the views of the pods a policy selects, by namespace and name.
func (s *Store) PolicyPods(name string) (*v1alpha1.PodEgressList, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.knownPolicy(name); err != nil {
		return nil, err
	}
	list := &v1alpha1.PodEgressList{}
	list.ResourceVersion = strconv.FormatUint(s.rv, 10)
	list.Items = make([]v1alpha1.PodEgress, 0, len(s.d.selected[name]))
	for e := range s.d.selected[name] {
		if e.view != nil {
			list.Items = append(list.Items, *e.view)
		}
	}
	slices.SortFunc(list.Items, func(a, b v1alpha1.PodEgress) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return list, nil
}

// PolicyPodsByNamespace counts the pods a policy selects now, by namespace, or returns
// NotFound. The registry sums the namespaces a user may get pods in: how many pods a
// policy selects elsewhere is not theirs to know.
func (s *Store) PolicyPodsByNamespace(name string) (map[string]int32, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.knownPolicy(name); err != nil {
		return nil, err
	}
	out := map[string]int32{}
	for e := range s.d.selected[name] {
		out[e.pod.Namespace]++
	}
	return out, nil
}

// PreviewInput snapshots what a preview of a packet from a pod to dst reads. The pod is
// named by namespace and name, or, if name is empty, by IP. Unknown pods are NotFound.
func (s *Store) PreviewInput(namespace, name string, ip, dst netip.Addr) (preview.Input, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.ready(); err != nil {
		return preview.Input{}, err
	}
	var e *podEntry
	if name != "" {
		if e = s.in.pods[namespace][name]; e == nil {
			return preview.Input{}, apierrors.NewNotFound(pods, namespace+"/"+name)
		}
	} else if e = s.d.byIP[ip]; e == nil {
		// The preview's registry words the answer: it must be the same whether no pod has
		// the IP or the user may not see the one that does.
		return preview.Input{}, apierrors.NewNotFound(pods, ip.String())
	}
	in := preview.Input{
		Pod: e.pod, NamespaceLabels: s.in.namespaces[e.pod.Namespace], NodeIP: s.in.nodes[e.pod.Spec.NodeName].ip,
		Policies: s.d.compiled, Cluster: s.d.cluster, HeldBy: s.d.heldBy,
	}
	in.NodeReach = s.nodeReach(e.pod.Spec.NodeName)
	in.Redirected = s.redirected(e.pod)
	for _, np := range s.in.netpols[e.pod.Namespace] {
		in.NetworkPolicies = append(in.NetworkPolicies, np)
	}
	slices.SortFunc(in.NetworkPolicies, func(a, b *networkingv1.NetworkPolicy) int { return strings.Compare(a.Name, b.Name) })
	if peer := s.d.byIP[dst]; peer != nil {
		in.Peer = &netpolicy.Peer{Pod: peer.pod, NamespaceLabels: s.in.namespaces[peer.pod.Namespace]}
	}
	return in, nil
}
