package view

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/egressgw/egressgw/apiserver/aggregated/netpolicy"
	"github.com/egressgw/egressgw/apiserver/aggregated/preview"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// TestOffSegmentIsDropNotSteer: a selected pod on a node whose agent reports no interface
// on the egress IP's subnet has its selected traffic dropped by that node's dataplane;
// its view and the preview say Drop, with the node, the egress IP and the subnets it has,
// not SNAT. Once the node reports an interface on the subnet, both say SNAT again. A node
// that has not reported its interfaces is not claimed to drop.
func TestOffSegmentIsDropNotSteer(t *testing.T) {
	f := newFixture(t)
	setInterfaces := func(node string, subnets ...string) {
		r := report(node)
		r.Status.Interfaces = []v1.NodeInterface{{Name: "eth0", Subnets: subnets}}
		f.s.SetNodeReport(r)
	}
	previewStep := func(t *testing.T) (string, string) {
		t.Helper()
		in, err := f.s.PreviewInput("paul", "frontend", netip.Addr{}, netip.MustParseAddr("8.8.8.8"))
		if err != nil {
			t.Fatal(err)
		}
		status := preview.Run(in, netpolicy.Packet{Destination: netip.MustParseAddr("8.8.8.8"), Protocol: corev1.ProtocolTCP, Port: 443})
		for _, s := range status.Steps {
			if s.Stage == v1alpha1.StageEgressNATPolicy {
				return s.Action, s.Message
			}
		}
		t.Fatalf("no EgressNATPolicy step: %+v", status.Steps)
		return "", ""
	}
	tests := []struct {
		name       string
		subnets    []string // node3's report; nil: none
		want       v1alpha1.Verdict
		wantAction string
		wantWhy    string
	}{
		{name: "not reported", want: v1alpha1.VerdictSNAT, wantAction: "Steer"},
		{name: "another segment", subnets: []string{"198.51.100.200/25"}, want: v1alpha1.VerdictDrop, wantAction: "Drop",
			wantWhy: "node node3 has no interface on a subnet of the egress IP 198.51.100.100 (its agent reports 198.51.100.200/25)"},
		{name: "back on the segment", subnets: []string{"198.51.100.13/24"}, want: v1alpha1.VerdictSNAT, wantAction: "Steer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.subnets != nil {
				setInterfaces("node3", tt.subnets...)
			}
			v := f.get(t, "paul", "frontend")
			if len(v.Policies) != 1 || len(v.Routes) != 1 {
				t.Fatalf("paul/frontend: policies %+v, routes %+v", v.Policies, v.Routes)
			}
			p, r := v.Policies[0], v.Routes[0]
			if p.Verdict != tt.want || r.Verdict != tt.want {
				t.Errorf("paul/frontend: policy %s (%s: %s), route %s; want %s", p.Verdict, p.Reason, p.Message, r.Verdict, tt.want)
			}
			if tt.wantWhy != "" && (p.Reason != ReasonOffSegment || !strings.Contains(p.Message, tt.wantWhy)) {
				t.Errorf("paul/frontend's policy says %s: %q, want %s: %q", p.Reason, p.Message, ReasonOffSegment, tt.wantWhy)
			}
			// alice/frontend runs on node1, which reported nothing: unaffected.
			if a := f.get(t, "alice", "frontend"); a.Policies[0].Verdict != v1alpha1.VerdictSNAT {
				t.Errorf("alice/frontend on node1: %s", a.Policies[0].Verdict)
			}
			action, msg := previewStep(t)
			if action != tt.wantAction || !strings.Contains(msg, tt.wantWhy) {
				t.Errorf("preview: %s %q, want %s with %q", action, msg, tt.wantAction, tt.wantWhy)
			}
		})
	}
}
