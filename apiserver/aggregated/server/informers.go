package server

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/aggregated/view"
	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	netinformers "github.com/egressgw/egressgw/apiserver/client/informers/externalversions"
)

// caches are the informers that feed the Store.
type caches struct {
	kube       informers.SharedInformerFactory
	net, nodes netinformers.SharedInformerFactory
	synced     []cache.InformerSynced
}

// newCaches registers every informer the views read, each feeding store. Pods and nodes
// are trimmed to what the views read as they enter the cache: with 10,000 pods, the
// fields nobody reads (managed fields, container specs, statuses) would be most of the
// server's memory.
func newCaches(kube kubernetes.Interface, net versioned.Interface, store *view.Store) (*caches, error) {
	c := &caches{
		kube: informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTransform(trim)),
		net:  netinformers.NewSharedInformerFactoryWithOptions(net, 0, netinformers.WithTransform(trim)),
		nodes: netinformers.NewSharedInformerFactoryWithOptions(net, 0,
			netinformers.WithNamespace(networking.NodeNamespace), netinformers.WithTransform(trim)),
	}
	register := []struct {
		informer cache.SharedIndexInformer
		handler  cache.ResourceEventHandler
	}{
		{c.kube.Core().V1().Pods().Informer(), handle(store.SetPod, store.DeletePod)},
		{c.kube.Core().V1().Namespaces().Informer(), handle(store.SetNamespace, store.DeleteNamespace)},
		{c.kube.Core().V1().Nodes().Informer(), handle(store.SetNode, store.DeleteNode)},
		{c.kube.Networking().V1().NetworkPolicies().Informer(), handle(store.SetNetworkPolicy, store.DeleteNetworkPolicy)},
		{c.net.Networking().V1().EgressNATPolicies().Informer(), handle(store.SetPolicy, store.DeletePolicy)},
		{c.net.Networking().V1().NetworkGatewayGroups().Informer(), handle(
			func(g *v1.NetworkGatewayGroup) {
				store.SetGateway(networking.KindNetworkGatewayGroup, g.Namespace, g.Name, g.Spec.FloatingIPs, g.Status.FloatingIPs, g.Status.Standbys, g.ResourceVersion)
			},
			func(g *v1.NetworkGatewayGroup) {
				store.DeleteGateway(networking.KindNetworkGatewayGroup, g.Namespace, g.Name, g.ResourceVersion)
			})},
		{c.net.Networking().V1alpha1().AnthosNetworkGateways().Informer(), handle(
			func(g *v1alpha1.AnthosNetworkGateway) {
				store.SetGateway(networking.KindAnthosNetworkGateway, g.Namespace, g.Name, g.Spec.FloatingIPs, g.Status.FloatingIPs, g.Status.Standbys, g.ResourceVersion)
			},
			func(g *v1alpha1.AnthosNetworkGateway) {
				store.DeleteGateway(networking.KindAnthosNetworkGateway, g.Namespace, g.Name, g.ResourceVersion)
			})},
		{c.nodes.Networking().V1().NetworkGatewayNodes().Informer(), handle(store.SetNodeReport, store.DeleteNodeReport)},
	}
	for _, r := range register {
		reg, err := r.informer.AddEventHandler(r.handler)
		if err != nil {
			return nil, fmt.Errorf("watching: %w", err)
		}
		c.synced = append(c.synced, reg.HasSynced)
	}
	return c, nil
}

// start runs the informers and, once every handler has seen the initial list, lets the
// Store compute its views.
func (c *caches) start(ctx context.Context, store *view.Store) {
	c.kube.Start(ctx.Done())
	c.net.Start(ctx.Done())
	c.nodes.Start(ctx.Done())
	go func() {
		start := time.Now()
		if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced...) {
			return
		}
		store.Synced()
		klog.InfoS("The egress views are computed", "took", time.Since(start).Round(time.Millisecond))
	}()
}

// handle adapts typed set and delete functions to informer events, including deletions
// whose final state the informer missed.
func handle[T any](set, del func(T)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { set(obj.(T)) },
		UpdateFunc: func(_, obj any) { set(obj.(T)) },
		DeleteFunc: func(obj any) {
			if gone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = gone.Obj
			}
			if t, ok := obj.(T); ok {
				del(t)
			}
		},
	}
}

// trim drops what no view reads, before the object enters the cache.
func trim(obj any) (any, error) {
	if m, ok := obj.(metav1.ObjectMetaAccessor); ok {
		m.GetObjectMeta().SetManagedFields(nil)
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		o.Annotations = nil
		o.OwnerReferences = nil
		containers := make([]corev1.Container, 0, len(o.Spec.Containers))
		for _, c := range o.Spec.Containers {
			if len(c.Ports) > 0 { // Named ports of destination pods, for NetworkPolicy.
				containers = append(containers, corev1.Container{Name: c.Name, Ports: c.Ports})
			}
		}
		o.Spec = corev1.PodSpec{NodeName: o.Spec.NodeName, HostNetwork: o.Spec.HostNetwork, Containers: containers}
		o.Status = corev1.PodStatus{Phase: o.Status.Phase, PodIP: o.Status.PodIP, PodIPs: o.Status.PodIPs}
	case *corev1.Node:
		o.Annotations = nil
		o.Status = corev1.NodeStatus{Addresses: o.Status.Addresses}
		o.Spec = corev1.NodeSpec{PodCIDR: o.Spec.PodCIDR, PodCIDRs: o.Spec.PodCIDRs}
	case *corev1.Namespace:
		o.Annotations = nil
		o.Status = corev1.NamespaceStatus{}
	case *networkingv1.NetworkPolicy:
		o.Annotations = nil
	case *v1.EgressNATPolicy:
		o.Annotations = nil
		o.Status = v1.EgressNATPolicyStatus{}
	}
	return obj, nil
}
