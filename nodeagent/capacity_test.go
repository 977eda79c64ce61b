package nodeagent

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// withEgressIPs adds n policies to s, each sending alice/fe to its own /32 through its own
// NetworkGatewayGroup, whose one floating IP (outside this node's subnets) worker2 holds.
func withEgressIPs(s snapshot, n int) snapshot {
	s.policies = slices.Clone(s.policies)
	s.gateways = slices.Clone(s.gateways)
	for i := range n {
		name := fmt.Sprintf("gw%05d", i)
		p := specPolicy()
		p.Name = name
		p.Spec.Destinations = []v1.Destination{{CIDR: netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}).String() + "/32"}}
		p.Spec.GatewayRef = &v1.GatewayReference{Namespace: "kube-system", Name: name}
		ip := netip.AddrFrom4([4]byte{100, 100, byte(i >> 8), byte(i)}).String()
		s.policies = append(s.policies, p)
		s.gateways = append(s.gateways, routing.Gateway{Ref: networking.ObjectRef{Kind: networking.KindNetworkGatewayGroup, Namespace: "kube-system", Name: name},
			FloatingIPs: []string{ip}, Placed: map[string]string{ip: "worker2"}})
	}
	return s
}

// TestPassPastCapacity: a map or id space that refuses entries does not stop the pass.
// The pass still programs the maps with the rest, holds and lets go of the node's
// floating IPs, and reports; the report's CapacityExceeded names the map and its limit,
// and the agent is not ready, with that reason. When everything fits again, both clear.
func TestPassPastCapacity(t *testing.T) {
	full := func(m string, limit int) error {
		return &routing.CapacityError{Map: m, Limit: limit, What: "entries", Refused: []string{"198.18.1.10"}}
	}
	tests := []struct {
		name string
		// over makes the pass run past a limit.
		over func(*rig, snapshot) snapshot
		want string // in the CapacityExceeded message
		// wantReadyz is in /readyz's answer, which names no pod or IP.
		wantReadyz string
	}{
		{
			name: "more egress IPs than the mark's ids",
			over: func(_ *rig, s snapshot) snapshot { return withEgressIPs(s, routing.MaxEgressIDs+3) },
			want: fmt.Sprintf("egress ids holds at most %d egress IPs", routing.MaxEgressIDs), wantReadyz: fmt.Sprintf("egress ids (at most %d)", routing.MaxEgressIDs),
		},
		{
			name: "a full map in Sync",
			over: func(r *rig, s snapshot) snapshot { r.dp.syncErr = full("egw_pods", 65536); return s },
			want: "egw_pods holds at most 65536", wantReadyz: "egw_pods (at most 65536)",
		},
		{
			name: "a full egw_uplinks",
			over: func(r *rig, s snapshot) snapshot { r.dp.uplinksErr = full("egw_uplinks", 4096); return s },
			want: "egw_uplinks holds at most 4096", wantReadyz: "egw_uplinks (at most 4096)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.renew(t)
			all := []netip.Addr{ip1, ip2}
			r.pass(t, tt.over(r, cluster(1, all, ip1, ip2)))
			if r.rec.index(op("Sync"), 0) < 0 {
				t.Fatalf("no Sync; the calls:\n%s", r.rec.dump(0))
			}
			if got := sortedIPs(r.fips.held); !slices.Equal(got, all) {
				t.Errorf("holding %v, want %v", got, all)
			}
			st := r.status.last
			if !slices.Equal(st.Held, all) || st.ObservedGeneration != 1 {
				t.Errorf("reported %v of generation %d, want %v of 1", st.Held, st.ObservedGeneration, all)
			}
			if st.Ready || st.Reason != ConditionCapacityExceeded || !strings.Contains(st.CapacityExceeded, tt.want) {
				t.Errorf("reported ready %v (%s), CapacityExceeded %q; want not ready, reason %s, naming %q", st.Ready, st.Reason, st.CapacityExceeded, ConditionCapacityExceeded, tt.want)
			}
			if err := r.a.Ready(); err == nil || !strings.Contains(err.Error(), tt.wantReadyz) || strings.Contains(err.Error(), "198.18.1.10") {
				t.Errorf("Ready() = %v, want an error naming %q and no pod or IP", err, tt.wantReadyz)
			}

			// The grant of ip2 is withdrawn while still past the limit: the pass lets it go.
			r.clock.t += 100 * time.Millisecond
			r.pass(t, tt.over(r, cluster(2, all, ip1)))
			if got := sortedIPs(r.fips.held); !slices.Equal(got, []netip.Addr{ip1}) || r.dp.grants[ip2] != (fakeGrant{}) {
				t.Errorf("after ip2's grant went: holding %v, BPF grants %v; want ip1 alone", got, r.dp.grants)
			}
			if st := r.status.last; !slices.Equal(st.Held, []netip.Addr{ip1}) || st.ObservedGeneration != 2 {
				t.Errorf("reported %v of generation %d, want [%s] of 2", st.Held, st.ObservedGeneration, ip1)
			}

			// Back within the limits.
			r.dp.syncErr, r.dp.uplinksErr = nil, nil
			r.pass(t, cluster(2, all, ip1))
			if st := r.status.last; !st.Ready || st.CapacityExceeded != "" {
				t.Errorf("within the limits again: reported ready %v, CapacityExceeded %q", st.Ready, st.CapacityExceeded)
			}
			if err := r.a.Ready(); err != nil {
				t.Errorf("within the limits again: Ready() = %v", err)
			}
		})
	}
}

// TestConditions: the report's Ready, CapacityExceeded, PodsCovered and EgressReachable
// conditions.
func TestConditions(t *testing.T) {
	tests := []struct {
		name      string
		s         nodeStatus
		wantReady metav1.ConditionStatus
		wantFull  metav1.ConditionStatus
		// wantCovered and wantReachable are PodsCovered's and EgressReachable's status;
		// True unless set.
		wantCovered, wantReachable metav1.ConditionStatus
		reason                     string
	}{
		{name: "programmed", s: nodeStatus{Ready: true, Reason: "Programmed"}, wantReady: metav1.ConditionTrue, wantFull: metav1.ConditionFalse, reason: "Programmed"},
		{name: "a map full", s: nodeStatus{Reason: ConditionCapacityExceeded, CapacityExceeded: "egw_pods holds at most 65536 pods"},
			wantReady: metav1.ConditionFalse, wantFull: metav1.ConditionTrue, reason: ConditionCapacityExceeded},
		{name: "a failed pass", s: nodeStatus{Reason: "DataplaneError", Message: "boom"}, wantReady: metav1.ConditionFalse, wantFull: metav1.ConditionFalse, reason: "DataplaneError"},
		{name: "a pod uncovered", s: nodeStatus{Ready: true, Reason: "Programmed", Uncovered: "1 pods not covered: alice/web: running and selected by a policy, with no IPv4 address"},
			wantReady: metav1.ConditionTrue, wantFull: metav1.ConditionFalse, wantCovered: metav1.ConditionFalse, reason: "Programmed"},
		{name: "a pod off its egress IP's segment", s: nodeStatus{Ready: true, Reason: "Programmed", Unreachable: "1 pods' selected traffic is dropped on this node: alice/web: EgressNATPolicy egress: node n1 has no interface ..."},
			wantReady: metav1.ConditionTrue, wantFull: metav1.ConditionFalse, wantReachable: metav1.ConditionFalse, reason: "Programmed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := conditions(tt.s)
			if len(got) != 4 || got[0].Type != v1.ConditionReady || got[1].Type != ConditionCapacityExceeded || got[2].Type != ConditionPodsCovered || got[3].Type != ConditionEgressReachable {
				t.Fatalf("conditions %v, want Ready, %s, %s and %s", got, ConditionCapacityExceeded, ConditionPodsCovered, ConditionEgressReachable)
			}
			if got[0].Status != tt.wantReady || got[0].Reason != tt.reason || got[1].Status != tt.wantFull {
				t.Errorf("Ready %s (%s), %s %s; want %s (%s), %s", got[0].Status, got[0].Reason, ConditionCapacityExceeded, got[1].Status, tt.wantReady, tt.reason, tt.wantFull)
			}
			if tt.wantFull == metav1.ConditionTrue && got[1].Message != tt.s.CapacityExceeded {
				t.Errorf("%s says %q, want %q", ConditionCapacityExceeded, got[1].Message, tt.s.CapacityExceeded)
			}
			wantCovered := cmp.Or(tt.wantCovered, metav1.ConditionTrue)
			if got[2].Status != wantCovered || (wantCovered == metav1.ConditionFalse && got[2].Message != tt.s.Uncovered) {
				t.Errorf("%s %s %q, want %s %q", ConditionPodsCovered, got[2].Status, got[2].Message, wantCovered, tt.s.Uncovered)
			}
			wantReachable := cmp.Or(tt.wantReachable, metav1.ConditionTrue)
			if got[3].Status != wantReachable || (wantReachable == metav1.ConditionFalse && got[3].Message != tt.s.Unreachable) {
				t.Errorf("%s %s %q, want %s %q", ConditionEgressReachable, got[3].Status, got[3].Message, wantReachable, tt.s.Unreachable)
			}
		})
	}
}
