package nodeagent

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	v1listers "github.com/egressgw/egressgw/apiserver/client/listers/networking/v1"
	v1alpha1listers "github.com/egressgw/egressgw/apiserver/client/listers/networking/v1alpha1"
)

// listersOnly is caches whose listers read indexers filled by the test, in the indexer's
// own order (a map's: it changes from one List to the next).
func listersOnly(t *testing.T, sc scope, objs ...any) *caches {
	t.Helper()
	index := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	nodes, reports, pods := index(), index(), index()
	for _, o := range objs {
		into := nodes
		switch o.(type) {
		case *v1.NetworkGatewayNode:
			into = reports
		case *corev1.Pod:
			into = pods
		}
		if err := into.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	return &caches{
		scope: sc,
		list: listers{
			reports:    v1listers.NewNetworkGatewayNodeLister(reports),
			pods:       corelisters.NewPodLister(pods),
			namespaces: corelisters.NewNamespaceLister(index()),
			nodes:      corelisters.NewNodeLister(nodes),
			policies:   v1listers.NewEgressNATPolicyLister(index()),
			groups:     v1listers.NewNetworkGatewayGroupLister(index()),
			legacy:     v1alpha1listers.NewAnthosNetworkGatewayLister(index()),
		},
		own: &ownNode{list: v1listers.NewNetworkGatewayNodeLister(index()), name: sc.node},
	}
}

// TestSnapshotCIDRsStable: every pass sees the cluster's CIDRs in one order, each once,
// however the informer lists the nodes, so the nft table renders the same and is not
// rewritten. (It was rewritten on most passes, 50–190 ms each, and a handover's pass
// waited for it.)
func TestSnapshotCIDRsStable(t *testing.T) {
	var nodes []any
	for i := 8; i >= 1; i-- {
		cidr := fmt.Sprintf("198.18.%d.0/24", i)
		nodes = append(nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node%d", i)},
			Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}}})
	}
	c := listersOnly(t, scope{node: "node3", clusterCIDRs: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("198.18.2.0/24")}}, nodes...)
	var first string
	for i := range 20 {
		s, err := c.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.IsSortedFunc(s.cluster, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) }) || len(s.cluster) != 9 {
			t.Fatalf("pass %d: cluster CIDRs %v: want the 8 pod CIDRs and the node segment, sorted, each once", i, s.cluster)
		}
		if want := []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24")}; !slices.Equal(s.podCIDRs, want) {
			t.Fatalf("pass %d: pod CIDRs %v, want %v", i, s.podCIDRs, want)
		}
		// The sources a gateway SNATs: every node's pod CIDRs, and not the node segment.
		if len(s.allPodCIDRs) != 8 || !slices.IsSortedFunc(s.allPodCIDRs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) }) ||
			slices.Contains(s.allPodCIDRs, netip.MustParsePrefix("198.51.100.0/24")) {
			t.Fatalf("pass %d: every node's pod CIDRs %v: want the 8, sorted, each once, and no node segment", i, s.allPodCIDRs)
		}
		text := nftState{PodCIDRs: s.podCIDRs, Cluster: s.cluster}.render()
		if i == 0 {
			first = text
		} else if text != first {
			t.Fatalf("pass %d renders another nft table than pass 0:\n%s\nthen\n%s", i, first, text)
		}
	}
}
