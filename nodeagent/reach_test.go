package nodeagent

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// TestUnreachable: a selected pod whose policy's egress IP is on no subnet of this node's
// interfaces, and that the node has no route to, is named, with its policy and why; the
// node drops its selected traffic. A pod on the segment, one whose egress IP the node
// routes to, and an unselected or host-network pod are not.
func TestUnreachable(t *testing.T) {
	hostNetwork := frontend("host", nodeIP.String())
	hostNetwork.Spec.HostNetwork = true
	backend := pod("alice", "be", "198.18.1.11", map[string]string{"role": "backend"})
	tests := []struct {
		name    string
		subnets []string
		noRoute []netip.Addr
		pods    []*corev1.Pod
		want    []string // prefixes of the entries
	}{
		{name: "on the egress IP's segment", subnets: []string{"198.51.100.0/24"}, pods: []*corev1.Pod{frontend("fe", "198.18.1.10")}},
		{name: "on another segment, routed to", subnets: []string{"198.51.100.128/25"}, pods: []*corev1.Pod{frontend("fe", "198.18.1.10")}},
		{name: "on another segment, no route", subnets: []string{"198.51.100.128/25"}, noRoute: []netip.Addr{ip1}, pods: []*corev1.Pod{frontend("fe", "198.18.1.10")},
			want: []string{"alice/fe: EgressNATPolicy egress: node worker1 has no interface on a subnet of the egress IP 198.51.100.101 (its agent reports 198.51.100.128/25) and no route to it"}},
		{name: "no route to another egress IP", subnets: []string{"198.51.100.128/25"}, noRoute: []netip.Addr{netip.MustParseAddr("198.51.100.250")}, pods: []*corev1.Pod{frontend("fe", "198.18.1.10")}},
		{name: "unselected and host-network pods", subnets: []string{"10.9.0.0/24"}, noRoute: []netip.Addr{ip1}, pods: []*corev1.Pod{backend, hostNetwork}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := cluster(1, []netip.Addr{ip1})
			s.pods = tt.pods
			d, err := s.desired(routing.NewTableBuilder())
			if err != nil {
				t.Fatal(err)
			}
			var ifaces []Interface
			for _, sn := range tt.subnets {
				ifaces = append(ifaces, Interface{Name: "eth0", Subnets: []netip.Prefix{netip.MustParsePrefix(sn)}})
			}
			got := s.unreachable(d.table, ifaces, tt.noRoute)
			if len(got) != len(tt.want) {
				t.Fatalf("unreachable %q, want %d entries %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("unreachable[%d] = %q, want it to begin %q", i, got[i], w)
				}
			}
			if msg := unreachableMessage(got); (msg == "") != (len(tt.want) == 0) {
				t.Errorf("message %q for %d pods", msg, len(got))
			}
		})
	}
}
