package nodeagent

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
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

// TestDefaultUplinks: with no --interfaces, the uplinks are the interfaces on a subnet of
// the node's IPs: a bridge's pod CIDR is neither reported (so no floating IP is placed
// on it) nor given the uplink programs, nor has its rp_filter loosened.
func TestDefaultUplinks(t *testing.T) {
	const cni0 = 3
	eth := Interface{Name: "eth0", MAC: "02:00:00:00:00:01", Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	bridge := Interface{Name: "cni0", MAC: "02:00:00:00:00:03", Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")}}
	tests := []struct {
		name       string
		chosen     bool // --interfaces given, matching both
		nodeIPs    []netip.Addr
		wantIfaces []string
		wantErr    bool
	}{
		{name: "the interface with the node IP", nodeIPs: []netip.Addr{nodeIP}, wantIfaces: []string{"eth0"}},
		{name: "--interfaces decides", chosen: true, nodeIPs: []netip.Addr{nodeIP}, wantIfaces: []string{"cni0", "eth0"}},
		{name: "a Node without an InternalIP has no uplink", wantErr: true},
		{name: "a node IP on no interface's subnet", nodeIPs: []netip.Addr{netip.MustParseAddr("203.0.113.7")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.fips.ifaces = []Interface{bridge, eth}
			r.host.uplinks["cni0"] = bpf.Uplink{Ifindex: cni0, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 3}}
			r.a.attach.chosen = tt.chosen
			r.renew(t)
			s := cluster(1, []netip.Addr{ip1})
			s.nodeIPs = tt.nodeIPs
			r.view.snap = s
			err := r.a.pass(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("pass: %v, want an error: %v", err, tt.wantErr)
			}
			var got []string
			for _, i := range r.status.last.Interfaces {
				got = append(got, i.Name)
			}
			if !slices.Equal(got, tt.wantIfaces) {
				t.Errorf("reported interfaces %v, want %v", got, tt.wantIfaces)
			}
			attached := r.rec.index(attachUplink(cni0), 0) >= 0
			if want := slices.Contains(tt.wantIfaces, "cni0"); attached != want || slices.Contains(r.host.loose, cni0) != want {
				t.Errorf("cni0 got the uplink programs: %v, a loose rp_filter: %v (%v); want %v", attached, slices.Contains(r.host.loose, cni0), r.host.loose, want)
			}
		})
	}
}
