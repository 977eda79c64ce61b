package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
)

// freshness keeps passes from acting on a cache that is behind: informers reconnect
// with a backoff after an API server restart, and a new leader's cache may be seconds
// old. A pass decides from the cache only if it shows
//
//   - every object this controller wrote, at the version its write returned; and
//   - after it wins the leadership, every node report and gateway at the version a
//     direct read from the API server returned.
//
// Otherwise it reads everything from the API server. Every write also carries the resourceVersion it was computed from,
// so a write from a stale object fails instead of undoing a newer one.
type freshness struct {
	mu   sync.Mutex
	want map[string]wanted // object key → the least resourceVersion the cache must show
	live bool              // read the API server directly before the next pass
}

type wanted struct {
	rv uint64
	at time.Time
}

// absentFor is how long an object the cache lacks is taken for one it has not seen yet,
// rather than one deleted since.
const absentFor = 10 * time.Second

func newFreshness() *freshness { return &freshness{want: map[string]wanted{}} }

func objectKey(kind string, obj client.Object) string {
	return kind + "/" + obj.GetNamespace() + "/" + obj.GetName()
}

// wrote notes an object as a write returned it.
func (f *freshness) wrote(kind string, obj client.Object) {
	rv, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := objectKey(kind, obj); rv > f.want[k].rv {
		f.want[k] = wanted{rv: rv, at: time.Now()}
	}
}

// won asks for a direct read before the next pass.
func (f *freshness) won() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live = true
}

// readLive reads the node reports and gateways from the API server, if a win asked for it.
func (f *freshness) readLive(ctx context.Context, live client.Reader) error {
	f.mu.Lock()
	need := f.live
	f.mu.Unlock()
	if !need {
		return nil
	}
	var (
		reports v1.NetworkGatewayNodeList
		groups  v1.NetworkGatewayGroupList
		legacy  v1alpha1.AnthosNetworkGatewayList
	)
	if err := live.List(ctx, &reports, client.InNamespace(NodeReportNamespace)); err != nil {
		return fmt.Errorf("reading the node reports from the API server: %w", err)
	}
	if err := live.List(ctx, &groups); err != nil {
		return fmt.Errorf("reading the gateways from the API server: %w", err)
	}
	if err := live.List(ctx, &legacy); err != nil {
		return fmt.Errorf("reading the gateways from the API server: %w", err)
	}
	for i := range reports.Items {
		f.wrote(kindReport, &reports.Items[i])
	}
	for i := range groups.Items {
		f.wrote(kindGroup, &groups.Items[i])
	}
	for i := range legacy.Items {
		f.wrote(kindLegacy, &legacy.Items[i])
	}
	f.mu.Lock()
	f.live = false
	f.mu.Unlock()
	return nil
}

// Kinds, in object keys.
const (
	kindReport = "NetworkGatewayNode"
	kindGroup  = "NetworkGatewayGroup"
	kindLegacy = "AnthosNetworkGateway"
	kindPolicy = "EgressNATPolicy"
)

// behind returns an object the cache shows older than it must, if any. Objects the
// cache shows at or past their version are forgotten, and so are objects it has lacked
// for absentFor (deleted).
func (f *freshness) behind(cached func(key string) (client.Object, bool)) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, want := range f.want {
		obj, ok := cached(k)
		if !ok {
			if time.Since(want.at) > absentFor {
				delete(f.want, k)
				continue
			}
			return k + " is not in the cache yet", true
		}
		have, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
		if err == nil && have < want.rv {
			return fmt.Sprintf("%s at resourceVersion %d, want %d", k, have, want.rv), true
		}
		delete(f.want, k)
	}
	return "", false
}

// pendingLocked says whether any object of the kind is awaited; f.mu is held (it is
// called from within behind, through the lookup).
func (f *freshness) pendingLocked(kind string) bool {
	for k := range f.want {
		if strings.HasPrefix(k, kind+"/") {
			return true
		}
	}
	return false
}
