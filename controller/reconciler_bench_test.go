package controller

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/controller/liveness"
	"github.com/egressgw/egressgw/test/testenv"
)

// discard is an event recorder that records nothing.
type discard struct{}

func (discard) Eventf(k8sruntime.Object, k8sruntime.Object, string, string, string, string, ...any) {}

// BenchmarkReconcile runs full passes over 500 nodes (4 subnets), 1,000 gateways with 3
// floating IPs each, and 10,000 policies, listed from memory with a copy of every object
// as the informer cache makes (memClient). Targets: a full resync
// <= 1 s of CPU; one node failure reassigned in <= 100 ms of controller time.
func BenchmarkReconcile(b *testing.B) {
	const nodes, gateways, policies = 500, 1000, 10000
	mem := &memClient{}
	for i := range nodes {
		name := fmt.Sprintf("node-%03d", i)
		subnet := fmt.Sprintf("198.18.%d.%d/22", (i%4)*4, 1+i/4)
		mem.nodes = append(mem.nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
		report := &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: NodeReportNamespace},
			Status: v1.NetworkGatewayNodeStatus{Interfaces: []v1.NodeInterface{{Name: "eth0", Subnets: []string{subnet}}}}}
		mem.reports = append(mem.reports, report)
		mem.leases = append(mem.leases,
			&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeasePrefix + name, Namespace: LeaseNamespace, ResourceVersion: "1"},
				Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](1)}})
	}
	for i := range gateways {
		g := &v1.NetworkGatewayGroup{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gw-%04d", i), Namespace: "kube-system"}}
		for k := range 3 {
			n := 3*i + k
			g.Spec.FloatingIPs = append(g.Spec.FloatingIPs, fmt.Sprintf("198.18.%d.%d", (n%4)*4+2, 1+n/4))
		}
		mem.groups = append(mem.groups, g)
	}
	for i := range policies {
		mem.policies = append(mem.policies, &v1.EgressNATPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("policy-%05d", i)},
			Spec: v1.EgressNATPolicySpec{Action: v1.ActionSNAT, Destinations: []v1.Destination{{CIDR: "203.0.113.0/24"}},
				Sources:    []v1.EgressSource{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint(i)}}}},
				GatewayRef: &v1.GatewayReference{Name: fmt.Sprintf("gw-%04d", i%gateways), Namespace: "kube-system"}},
		})
	}
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	r := &Reconciler{client: mem, events: discard{}, tracker: liveness.NewTracker(clk, 500*time.Millisecond)}
	ctx := context.Background()
	if _, err := r.Reconcile(ctx, everything); err != nil { // the first pass places everything
		b.Fatal(err)
	}
	mem.agentsCatchUp()
	runtime.GC()
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	b.Logf("heap after the first pass: %d MB; %d status writes", stats.HeapAlloc>>20, mem.writes)

	b.Run("resync, nothing changed", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.Reconcile(ctx, everything); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one node down", func(b *testing.B) {
		renewals := 1
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			// node-i stops renewing; every other node renews every 400 ms. After four
			// rounds node-i's lease (1 s) and the grace (0.5 s) have lapsed, and the timed
			// pass moves its IPs.
			down := fmt.Sprintf("node-%03d", i%nodes)
			for round := range 4 {
				clk.Step(400 * time.Millisecond)
				renewals++
				for _, l := range mem.leases {
					if l.Name != LeasePrefix+down {
						// As the API server does: every write is a new resourceVersion,
						// which is what the tracker watches on its own clock.
						l.Spec.RenewTime = &metav1.MicroTime{Time: clk.Now()}
						l.ResourceVersion = fmt.Sprint(renewals)
					}
				}
				if round == 3 {
					break
				}
				if _, err := r.Reconcile(ctx, everything); err != nil {
					b.Fatal(err)
				}
				mem.agentsCatchUp()
			}
			writes := mem.writes
			b.StartTimer()
			if _, err := r.Reconcile(ctx, everything); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			mem.agentsCatchUp()
			if r.tracker.Up(down) {
				b.Fatalf("%s is still Up", down)
			}
			if other := fmt.Sprintf("node-%03d", (i+1)%nodes); !r.tracker.Up(other) {
				b.Fatalf("%s, which renews its lease, is Down", other)
			}
			if mem.writes == writes {
				b.Fatalf("%s went down and nothing was written", down)
			}
			b.ReportMetric(float64(mem.writes-writes), "writes/op")
			b.StartTimer()
		}
	})
	// The process holds what a real controller's cache holds (every object above) plus the
	// fake client's copies; its peak RSS bounds the controller's from above.
	b.Logf("peak RSS of the benchmark process: %d MB", peakRSS(b)>>20)
}

// peakRSS reads VmHWM, the process's peak resident set, from /proc.
func peakRSS(b *testing.B) int64 {
	rss, err := testenv.ProcStatus(0, "VmHWM")
	if err != nil {
		b.Fatal(err)
	}
	return rss
}
