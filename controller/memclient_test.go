package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
)

// memClient serves the big lists from memory, copying each object as controller-runtime's
// informer cache does (deeply, unless UnsafeDisableDeepCopy), so that a benchmark measures the controller rather than the fake
// client's per-call overhead. Status writes are stored back. Leases go to the embedded
// client, where the benchmark renews them.
type memClient struct {
	client.Client
	groups   []*v1.NetworkGatewayGroup
	policies []*v1.EgressNATPolicy
	reports  []*v1.NetworkGatewayNode
	nodes    []*corev1.Node
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

func replace[P interface {
	client.Object
	comparable
}](list []P, o P) {
	for i := range list {
		if list[i].GetNamespace() == o.GetNamespace() && list[i].GetName() == o.GetName() {
			list[i] = o.DeepCopyObject().(P)
			return
		}
	}
}
