package view

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/apiserver/aggregated/netpolicy"
	"github.com/egressgw/egressgw/apiserver/aggregated/preview"
	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

const (
	benchPods       = 10000
	benchPolicies   = 1000
	benchNamespaces = 100
	benchNodes      = 100
)

// benchStore is a cluster of 10,000 pods in 100 namespaces on 100 nodes, and 1,000
// policies, each selecting the pods labelled app=<i> in the namespaces of team <i mod 50>:
// ten pods each, to one address of 203.0.113.0/24; every tenth also claims 0.0.0.0/0.
// Addresses are from the benchmarking range 198.18.0.0/15; nothing carries traffic.
func benchStore(b *testing.B) *Store {
	b.Helper()
	s := New([]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, 0)
	for i := range benchNodes {
		s.SetNode(newNode(fmt.Sprintf("node%03d", i), fmt.Sprintf("198.51.100.%d", 11+i), fmt.Sprintf("198.18.%d.0/24", i)))
		s.SetNodeReport(report(fmt.Sprintf("node%03d", i), gatewayIPs(i)...))
	}
	for i := range benchNamespaces {
		s.SetNamespace(newNamespace(fmt.Sprintf("ns-%03d", i), "team", fmt.Sprint(i%50)))
	}
	for i := range benchPolicies {
		placed := map[string]string{}
		for _, ip := range gatewayIPs(i) {
			placed[ip] = fmt.Sprintf("node%03d", i%benchNodes)
		}
		s.SetGateway(networking.KindNetworkGatewayGroup, "kube-system", fmt.Sprintf("gw-%04d", i), gatewayIPs(i), placed, nil, "1")
		s.SetPolicy(benchPolicy(i))
	}
	for j := range benchPods {
		s.SetPod(benchPod(j))
	}
	start := time.Now()
	s.Synced()
	b.Logf("computed %d views with %d policies in %s", benchPods, benchPolicies, time.Since(start).Round(time.Millisecond))
	return s
}

func gatewayIPs(i int) []string {
	n := 3 * i
	return []string{fmt.Sprintf("198.19.%d.%d", n>>8, n&255), fmt.Sprintf("198.19.%d.%d", (n+1)>>8, (n+1)&255), fmt.Sprintf("198.19.%d.%d", (n+2)>>8, (n+2)&255)}
}

func benchPolicy(i int) *v1.EgressNATPolicy {
	p := &v1.EgressNATPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("policy-%04d", i), CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(i) * time.Second))},
		Spec: v1.EgressNATPolicySpec{
			Sources: []v1.EgressSource{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprint(i % 50)}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint(i)}},
			}},
			Action:       v1.ActionSNAT,
			Destinations: []v1.Destination{{CIDR: fmt.Sprintf("203.0.113.%d/32", i%256)}},
			GatewayRef:   &v1.GatewayReference{Namespace: "kube-system", Name: fmt.Sprintf("gw-%04d", i)},
		},
	}
	if i%10 == 0 {
		p.Spec.Destinations = append(p.Spec.Destinations, v1.Destination{CIDR: "0.0.0.0/0"})
	}
	return p
}

func benchPod(j int) *corev1.Pod {
	node := j % benchNodes
	p := newPod(fmt.Sprintf("ns-%03d", j%benchNamespaces), fmt.Sprintf("pod-%05d", j), fmt.Sprintf("node%03d", node),
		fmt.Sprintf("198.18.%d.%d", node, 2+j/benchNodes), "app", fmt.Sprint(j%benchPolicies), "tier", "web")
	p.ResourceVersion = fmt.Sprint(1000 + j)
	return p
}

func percentiles(b *testing.B, latencies []time.Duration) {
	slices.Sort(latencies)
	p := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))].Nanoseconds()) / 1e6
	}
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
}

// BenchmarkPreview is a packet-path preview in process, from a pod named by namespace and
// name: the snapshot of the caches, NetworkPolicy, the egress decision, the path. Target:
// p99 <= 2 ms.
func BenchmarkPreview(b *testing.B) {
	s := benchStore(b)
	var latencies []time.Duration
	i := 0
	for b.Loop() {
		j := (i * 7919) % benchPods
		i++
		pod := benchPod(j)
		t0 := time.Now()
		in, err := s.PreviewInput(pod.Namespace, pod.Name, netip.Addr{}, netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", (j%benchPolicies)%256)))
		if err != nil {
			b.Fatal(err)
		}
		status := preview.Run(in, netpolicy.Packet{Destination: netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", (j%benchPolicies)%256)), Protocol: corev1.ProtocolTCP, Port: 443})
		latencies = append(latencies, time.Since(t0))
		if status.Verdict != "SNAT" {
			b.Fatalf("pod %d: %s\n%+v", j, status.Verdict, status.Steps)
		}
	}
	percentiles(b, latencies)
}

// BenchmarkListNamespace lists one namespace's 100 views in process.
func BenchmarkListNamespace(b *testing.B) {
	s := benchStore(b)
	var latencies []time.Duration
	for b.Loop() {
		t0 := time.Now()
		list, err := s.PodEgresses("ns-042", nil)
		latencies = append(latencies, time.Since(t0))
		if err != nil || len(list.Items) != benchPods/benchNamespaces {
			b.Fatalf("%v, %d views", err, len(list.Items))
		}
	}
	percentiles(b, latencies)
}

// BenchmarkFailover is the work one gateway's failover costs: recompiling the policies
// and recomputing the views of the pods that use it.
func BenchmarkFailover(b *testing.B) {
	s := benchStore(b)
	w, err := s.WatchPodEgresses("", WatchOptions{ResourceVersion: fmt.Sprint(s.rv)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for range w.ResultChan() {
		}
	}()
	i := 0
	for b.Loop() {
		placed := map[string]string{}
		for _, ip := range gatewayIPs(7) {
			placed[ip] = fmt.Sprintf("node%03d", i%benchNodes)
		}
		i++
		s.SetGateway(networking.KindNetworkGatewayGroup, "kube-system", "gw-0007", gatewayIPs(7), placed, nil, fmt.Sprint(100000+i))
	}
}

// BenchmarkMemory reports the heap the Store and the pods it holds take. The pods are as
// the server's informers keep them: trimmed to what the views read.
func BenchmarkMemory(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := benchStore(b)
	runtime.GC()
	runtime.ReadMemStats(&after)
	for b.Loop() {
		_ = s.IsSynced()
	}
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "heap-MB")
	runtime.KeepAlive(s)
}
