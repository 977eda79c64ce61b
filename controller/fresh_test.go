package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// TestFreshness: a pass trusts its cache only once the cache shows what this controller
// wrote; an object the cache has not seen yet counts as behind.
func TestFreshness(t *testing.T) {
	node := func(rv string) *v1.NetworkGatewayNode {
		return &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "worker1", ResourceVersion: rv}}
	}
	cache := map[string]client.Object{}
	lookup := func(k string) (client.Object, bool) { o, ok := cache[k]; return o, ok }

	f := newFreshness()
	if _, behind := f.behind(lookup); behind {
		t.Fatal("behind with nothing written")
	}
	f.wrote(kindReport, node("12"))
	if what, behind := f.behind(lookup); !behind {
		t.Error("not behind although the cache lacks a written object")
	} else {
		t.Log(what)
	}
	cache[objectKey(kindReport, node(""))] = node("11")
	if _, behind := f.behind(lookup); !behind {
		t.Error("not behind although the cache shows resourceVersion 11 of a write that returned 12")
	}
	cache[objectKey(kindReport, node(""))] = node("13")
	if _, behind := f.behind(lookup); behind {
		t.Error("behind although the cache shows a newer version than the write")
	}
	if len(f.want) != 0 {
		t.Errorf("%d objects still awaited once the cache caught up", len(f.want))
	}
}
