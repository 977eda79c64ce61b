package view

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"

	"github.com/egressgw/egressgw/apiserver/aggregated/netpolicy"
	"github.com/egressgw/egressgw/apiserver/aggregated/preview"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// TestPaths: a selected pod on a node whose agent reports an interface on the egress
// IP's subnet goes on the segment; on another subnet, with a router, it goes the routed
// way (20 bytes more); with no router it has its selected traffic dropped by its node's
// dataplane, and its view and the preview say Drop, with the node, the egress IP and the
// subnets it has, not SNAT. A node that has not reported its interfaces is not claimed to
// drop. The policy's view groups the nodes by path.
func TestPaths(t *testing.T) {
	f := newFixture(t)
	setInterfaces := func(node string, routers []string, subnets ...string) {
		r := report(node)
		r.Status.Interfaces = []v1.NodeInterface{{Name: "eth0", Subnets: subnets, Routers: routers}}
		f.s.SetNodeReport(r)
	}
	previewStep := func(t *testing.T) (v1alpha1.EgressPreviewStatus, string, string) {
		t.Helper()
		in, err := f.s.PreviewInput("paul", "frontend", netip.Addr{}, netip.MustParseAddr("8.8.8.8"))
		if err != nil {
			t.Fatal(err)
		}
		status := preview.Run(in, netpolicy.Packet{Destination: netip.MustParseAddr("8.8.8.8"), Protocol: corev1.ProtocolTCP, Port: 443})
		for _, s := range status.Steps {
			if s.Stage == v1alpha1.StageEgressNATPolicy {
				return status, s.Action, s.Message
			}
		}
		t.Fatalf("no EgressNATPolicy step: %+v", status.Steps)
		return status, "", ""
	}
	tests := []struct {
		name       string
		subnets    []string // node3's report; nil: none
		routers    []string
		want       v1alpha1.Verdict
		wantPath   v1alpha1.Path
		wantAction string
		wantWhy    string
		wantPaths  []v1alpha1.NodePaths
	}{
		{name: "not reported", want: v1alpha1.VerdictSNAT, wantPath: v1alpha1.PathOnSegment, wantAction: "Steer"},
		{name: "another segment, no router", subnets: []string{"198.51.100.200/25"}, want: v1alpha1.VerdictDrop, wantAction: "Drop",
			wantWhy:   "node node3 has no interface on a subnet of the egress IP 198.51.100.100 (its agent reports 198.51.100.200/25) and no route to it",
			wantPaths: []v1alpha1.NodePaths{{Path: v1alpha1.PathNone, Nodes: []string{"node3"}}}},
		{name: "another segment, a router", subnets: []string{"198.51.100.200/25"}, routers: []string{"198.51.100.129"}, want: v1alpha1.VerdictSNAT,
			wantPath: v1alpha1.PathRouted, wantAction: "Steer", wantWhy: "wraps the packet in an IPv4 header (IPv4-in-IPv4, 20 bytes) to 198.51.100.100",
			wantPaths: []v1alpha1.NodePaths{{Path: v1alpha1.PathRouted, OverheadBytes: 20, Nodes: []string{"node3"}}}},
		{name: "back on the segment", subnets: []string{"198.51.100.13/24"}, want: v1alpha1.VerdictSNAT, wantPath: v1alpha1.PathOnSegment, wantAction: "Steer",
			wantPaths: []v1alpha1.NodePaths{{Path: v1alpha1.PathOnSegment, Nodes: []string{"node3"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.subnets != nil {
				setInterfaces("node3", tt.routers, tt.subnets...)
			}
			v := f.get(t, "paul", "frontend")
			if len(v.Policies) != 1 || len(v.Routes) != 1 {
				t.Fatalf("paul/frontend: policies %+v, routes %+v", v.Policies, v.Routes)
			}
			p, r := v.Policies[0], v.Routes[0]
			if p.Verdict != tt.want || r.Verdict != tt.want {
				t.Errorf("paul/frontend: policy %s (%s: %s), route %s; want %s", p.Verdict, p.Reason, p.Message, r.Verdict, tt.want)
			}
			if tt.want == v1alpha1.VerdictDrop && (p.Reason != ReasonNoRoute || !strings.Contains(p.Message, tt.wantWhy)) {
				t.Errorf("paul/frontend's policy says %s: %q, want %s: %q", p.Reason, p.Message, ReasonNoRoute, tt.wantWhy)
			}
			overhead := int32(0)
			if tt.wantPath == v1alpha1.PathRouted {
				overhead = 20
			}
			if p.Path != tt.wantPath || r.Path != tt.wantPath || p.OverheadBytes != overhead || r.OverheadBytes != overhead {
				t.Errorf("paul/frontend: policy path %q (+%d), route path %q (+%d); want %q (+%d)", p.Path, p.OverheadBytes, r.Path, r.OverheadBytes, tt.wantPath, overhead)
			}
			pv, err := f.s.PolicyView("egress")
			if err != nil {
				t.Fatal(err)
			}
			if !cmp.Equal(pv.Paths, tt.wantPaths, cmpopts.EquateEmpty()) {
				t.Errorf("the policy's view: paths %+v, want %+v", pv.Paths, tt.wantPaths)
			}
			// alice/frontend runs on node1, which reported nothing: unaffected.
			if a := f.get(t, "alice", "frontend"); a.Policies[0].Verdict != v1alpha1.VerdictSNAT {
				t.Errorf("alice/frontend on node1: %s", a.Policies[0].Verdict)
			}
			status, action, msg := previewStep(t)
			if action != tt.wantAction || !strings.Contains(msg, tt.wantWhy) {
				t.Errorf("preview: %s %q, want %s with %q", action, msg, tt.wantAction, tt.wantWhy)
			}
			if status.Path != tt.wantPath {
				t.Errorf("preview: path %q, want %q", status.Path, tt.wantPath)
			}
		})
	}
}
