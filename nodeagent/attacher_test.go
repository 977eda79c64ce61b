package nodeagent

import (
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// TestAttachPodsSources: every local pod's veth gets the classifier with the pod's own IPs
// as its only sources, in the same call (the dataplane writes them before it attaches);
// a pod whose IP changes gets its new sources, and a pod that goes takes its sources
// with it.
func TestAttachPodsSources(t *testing.T) {
	a, b, b2, c := netip.MustParseAddr("198.18.1.10"), netip.MustParseAddr("198.18.1.11"),
		netip.MustParseAddr("198.18.1.21"), netip.MustParseAddr("198.18.1.12")
	links := map[netip.Addr]int{a: 7, b: 8, b2: 8}
	type step struct {
		pods      []netip.Addr
		wantCalls []string
		want      map[int][]netip.Addr // what the dataplane holds after the step
	}
	tests := []struct {
		name  string
		links map[netip.Addr]int
		steps []step
	}{
		{name: "each pod's veth lets its own IP through", links: links, steps: []step{
			{pods: []netip.Addr{a, b}, wantCalls: []string{"AttachPod 7 [198.18.1.10]", "AttachPod 8 [198.18.1.11]"},
				want: map[int][]netip.Addr{7: {a}, 8: {b}}},
			{pods: []netip.Addr{a, b}, want: map[int][]netip.Addr{7: {a}, 8: {b}}},
		}},
		{name: "a new IP on the same veth replaces the old", links: links, steps: []step{
			{pods: []netip.Addr{a, b}, wantCalls: []string{"AttachPod 7 [198.18.1.10]", "AttachPod 8 [198.18.1.11]"},
				want: map[int][]netip.Addr{7: {a}, 8: {b}}},
			{pods: []netip.Addr{a, b2}, wantCalls: []string{"AttachPod 8 [198.18.1.21]"},
				want: map[int][]netip.Addr{7: {a}, 8: {b2}}},
		}},
		{name: "a pod that goes takes its sources", links: links, steps: []step{
			{pods: []netip.Addr{a, b}, wantCalls: []string{"AttachPod 7 [198.18.1.10]", "AttachPod 8 [198.18.1.11]"},
				want: map[int][]netip.Addr{7: {a}, 8: {b}}},
			{pods: []netip.Addr{a}, wantCalls: []string{"DetachPod 8"}, want: map[int][]netip.Addr{7: {a}}},
		}},
		{name: "a pod whose veth is not found gets nothing", links: links, steps: []step{
			{pods: []netip.Addr{a, c}, wantCalls: []string{"AttachPod 7 [198.18.1.10]"}, want: map[int][]netip.Addr{7: {a}}},
		}},
		{name: "pods routed through one interface share it", links: map[netip.Addr]int{a: 9, b: 9}, steps: []step{
			{pods: []netip.Addr{b, a}, wantCalls: []string{"AttachPod 9 [198.18.1.10 198.18.1.11]"},
				want: map[int][]netip.Addr{9: {a, b}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{clock: &fakeClock{}}
			dp := &fakeDataplane{rec: rec, pods: map[int][]netip.Addr{}}
			at := &attacher{dp: dp, host: &fakeHost{rec: rec, pods: tt.links}, now: rec.clock.now, resync: time.Minute}
			for i, s := range tt.steps {
				tbl := routing.Table{Pods: map[netip.Addr]uint32{}}
				for _, ip := range s.pods {
					tbl.Pods[ip] = 1
				}
				from := len(rec.calls)
				if err := at.attachPods(tbl); err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, c := range rec.calls[from:] {
					got = append(got, c.String())
				}
				if !slices.Equal(got, s.wantCalls) {
					t.Errorf("step %d: calls %q, want %q", i, got, s.wantCalls)
				}
				if !maps.EqualFunc(dp.pods, s.want, slices.Equal) {
					t.Errorf("step %d: the dataplane holds %v, want %v", i, dp.pods, s.want)
				}
			}
		})
	}
}
