package controller

import (
	"context"
	"slices"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
)

// memClient serves the big lists from memory, copying each object as controller-runtime's
// informer cache does (deeply, unless UnsafeDisableDeepCopy), so that a benchmark measures the controller rather than the fake
// client's per-call overhead (the fake client builds a REST mapper on every write).
// Status writes and grants (NetworkGatewayNode spec patches) are stored back; the
// benchmark renews the leases in place. Any other call panics on the nil client.Client.
type memClient struct {
	client.Client
	groups   []*v1.NetworkGatewayGroup
	policies []*v1.EgressNATPolicy
	reports  []*v1.NetworkGatewayNode
	nodes    []*corev1.Node
	leases   []*coordinationv1.Lease
	writes   int
}

func (m *memClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	var o client.ListOptions
	o.ApplyOptions(opts)
	deep := o.UnsafeDisableDeepCopy == nil || !*o.UnsafeDisableDeepCopy
	switch l := list.(type) {
	case *v1.NetworkGatewayGroupList:
		l.Items = copyAll(m.groups, deep)
	case *v1.EgressNATPolicyList:
		l.Items = copyAll(m.policies, deep)
	case *v1.NetworkGatewayNodeList:
		l.Items = copyAll(m.reports, deep)
	case *corev1.NodeList:
		l.Items = copyAll(m.nodes, deep)
	case *coordinationv1.LeaseList:
		l.Items = copyAll(m.leases, deep)
	case *v1alpha1.AnthosNetworkGatewayList:
		l.Items = nil
	default:
		return m.Client.List(ctx, list, opts...)
	}
	return nil
}

func copyAll[T any, P interface {
	*T
	DeepCopyInto(*T)
}](in []P, deep bool) []T {
	out := make([]T, len(in))
	for i, o := range in {
		if deep {
			o.DeepCopyInto(&out[i])
		} else {
			out[i] = *o // as the cache does with UnsafeDisableDeepCopy: maps and slices shared
		}
	}
	return out
}

// Patch stores a node's grants, bumping its generation as the API server does.
func (m *memClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	o, ok := obj.(*v1.NetworkGatewayNode)
	if !ok {
		return m.Client.Patch(ctx, obj, patch, opts...)
	}
	m.writes++
	o.Generation++
	replace(m.reports, o)
	return nil
}

// agentsCatchUp does what every node agent does after a grant: it holds what its spec
// grants and says so in its status.
func (m *memClient) agentsCatchUp() {
	for i, r := range m.reports {
		if r.Status.ObservedGeneration == r.Generation {
			continue
		}
		c := r.DeepCopy()
		c.Status.FloatingIPs = slices.Clone(c.Spec.FloatingIPs)
		c.Status.ObservedGeneration = c.Generation
		m.reports[i] = c
	}
}

func (m *memClient) Status() client.SubResourceWriter { return memStatus{m} }

type memStatus struct{ m *memClient }

var _ client.SubResourceWriter = memStatus{}

// Patch stores the patched object, which the controller has already changed in place.
func (s memStatus) Patch(_ context.Context, obj client.Object, _ client.Patch, _ ...client.SubResourcePatchOption) error {
	s.m.writes++
	switch o := obj.(type) {
	case *v1.NetworkGatewayGroup:
		replace(s.m.groups, o)
	case *v1.EgressNATPolicy:
		replace(s.m.policies, o)
	}
	return nil
}

func (s memStatus) Create(context.Context, client.Object, client.Object, ...client.SubResourceCreateOption) error {
	return nil
}

func (s memStatus) Update(context.Context, client.Object, ...client.SubResourceUpdateOption) error {
	return nil
}

func (s memStatus) Apply(context.Context, runtime.ApplyConfiguration, ...client.SubResourceApplyOption) error {
	return nil
}

// replace finds o's namespace and name in list, which the benchmark builds sorted, and
// stores a copy of o there.
func replace[P interface {
	client.Object
	comparable
}](list []P, o P) {
	key := func(x P) string { return x.GetNamespace() + "/" + x.GetName() }
	if i, ok := slices.BinarySearchFunc(list, key(o), func(x P, k string) int { return strings.Compare(key(x), k) }); ok {
		list[i] = o.DeepCopyObject().(P)
	}
}
