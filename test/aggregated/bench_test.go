package aggregated

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/test/testenv"
)

const (
	benchPods       = 10000
	benchPolicies   = 1000
	benchNamespaces = 100
	benchNodes      = 100
)

// BenchmarkListNamespace lists one namespace's 100 podegresses end to end: through
// kube-apiserver's aggregation layer (authentication, authorization, the proxy, TLS to the
// server) and the server's own authorization of the pods, with 10,000 pods and 1,000
// policies in its caches, all written through the real API server. Target: p99 <= 20 ms.
// Its last run lists straight from the server, and each run counts the server's GCs.
// The server runs in a process of its own, as deployed (startProcess), and the benchmark
// reports that process's resident set: its caches and views (target <= 250 MB).
// Addresses are in 198.18.0.0/15, the benchmarking range; nothing carries traffic.
func BenchmarkListNamespace(b *testing.B) {
	e, server := startProcess(b, "198.51.100.0/24")
	ctx := context.Background()
	loadStart := time.Now()
	parallel(b, benchNodes, func(i int) error { e.createNode(b, i); return nil })
	parallel(b, benchNamespaces, func(i int) error {
		e.createNamespace(b, fmt.Sprintf("ns-%03d", i), map[string]string{"team": fmt.Sprint(i % 50)})
		return nil
	})
	parallel(b, benchPolicies, func(i int) error {
		groups := e.net.NetworkingV1().NetworkGatewayGroups("kube-system")
		g, err := groups.Create(ctx, benchGateway(i), metav1.CreateOptions{})
		if err != nil {
			return err
		}
		g.Status.FloatingIPs = map[string]string{}
		for _, ip := range g.Spec.FloatingIPs {
			g.Status.FloatingIPs[ip] = fmt.Sprintf("node%d", i%benchNodes)
		}
		_, err = groups.UpdateStatus(ctx, g, metav1.UpdateOptions{})
		return err
	})
	parallel(b, benchPolicies, func(i int) error {
		// The webhook checks the gateway exists in its cache, which may lag a moment.
		var err error
		for range 50 {
			if _, err = e.net.NetworkingV1().EgressNATPolicies().Create(ctx, benchPolicy(i), metav1.CreateOptions{}); err == nil {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return err
	})
	parallel(b, benchPods, func(j int) error {
		node := j % benchNodes
		return e.writePod(fmt.Sprintf("ns-%03d", j%benchNamespaces), fmt.Sprintf("pod-%05d", j), fmt.Sprintf("node%d", node),
			fmt.Sprintf("198.18.%d.%d", node, 2+j/benchNodes), map[string]string{"app": fmt.Sprint(j % benchPolicies)})
	})
	b.Logf("wrote %d pods, %d policies and gateways, %d namespaces and nodes in %s",
		benchPods, benchPolicies, benchNamespaces, time.Since(loadStart).Round(time.Millisecond))

	cfg := rest.CopyConfig(e.cp.Config)
	cfg.QPS, cfg.Burst = 5000, 5000
	client := kubernetes.NewForConfigOrDie(cfg).Discovery().RESTClient()
	// The views follow the informers: wait until every pod has one, selected as planned.
	eventually(b, 2*time.Minute, func() string {
		raw, err := client.Get().AbsPath("/apis/egress.egressgw.io/v1alpha1/podegresses").Param("labelSelector", "app").DoRaw(ctx)
		if err != nil {
			return err.Error()
		}
		if n := strings.Count(string(raw), `"policies":[{"name":"policy-`); n != benchPods {
			return fmt.Sprintf("%d of %d views show their policy", n, benchPods)
		}
		return ""
	})

	// The baseline is kube-apiserver listing the same namespace's 100 pods from its own
	// watch cache: the same client, TLS and authorization, without the aggregation hop.
	// The last run bypasses kube-apiserver, to show which share of the time is ours.
	direct := e.directClient(b)
	viaKube := func(path, accept string) func() ([]byte, error) {
		return func() ([]byte, error) { return client.Get().AbsPath(path).SetHeader("Accept", accept).DoRaw(ctx) }
	}
	const views = "/apis/egress.egressgw.io/v1alpha1/namespaces/ns-042/podegresses"
	for _, format := range []struct {
		name string
		get  func() ([]byte, error)
	}{
		{"baseline: core pods, json", viaKube("/api/v1/namespaces/ns-042/pods", "application/json")},
		{"json", viaKube(views, "application/json")},
		{"table (kubectl get)", viaKube(views, "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")},
		{"json, straight to the server", func() ([]byte, error) { return getBody(direct, serverURL+views) }},
	} {
		b.Run(format.name, func(b *testing.B) {
			for range 200 { // Warm up: TLS sessions and the aggregator's connections.
				if _, err := format.get(); err != nil {
					b.Fatal(err)
				}
			}
			gcs := serverGCs(b, direct)
			var latencies []time.Duration
			for b.Loop() {
				t0 := time.Now()
				raw, err := format.get()
				latencies = append(latencies, time.Since(t0))
				if err != nil || !strings.Contains(string(raw), "pod-00042") {
					b.Fatalf("%v: %.200s", err, raw)
				}
			}
			slices.Sort(latencies)
			p := func(q float64) float64 {
				return float64(latencies[int(q*float64(len(latencies)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(p(0.5), "p50-ms")
			b.ReportMetric(p(0.99), "p99-ms")
			// Each collection of the server's heap slows the requests it overlaps: fewer
			// of them is a shorter tail.
			b.ReportMetric(float64(serverGCs(b, direct)-gcs)/float64(b.N)*1000, "server-GCs/1000-lists")
		})
	}

	// The server runs in its own process, as deployed: its memory is its own.
	b.Logf("the aggregated API server's process: RSS %d MB (peak %d MB)",
		procStatus(b, server.Process.Pid, "VmRSS")>>20, procStatus(b, server.Process.Pid, "VmHWM")>>20)
}

func benchGateway(i int) *v1.NetworkGatewayGroup {
	g := &v1.NetworkGatewayGroup{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gw-%04d", i), Namespace: "kube-system"}}
	for k := range 3 {
		n := 3*i + k
		g.Spec.FloatingIPs = append(g.Spec.FloatingIPs, fmt.Sprintf("198.19.%d.%d", n>>8, n&255))
	}
	return g
}

// benchPolicy selects the pods labelled app=<i> in the namespaces of team <i mod 50>: ten
// pods, to one address of 203.0.113.0/24. Every tenth policy also claims 0.0.0.0/0.
func benchPolicy(i int) *v1.EgressNATPolicy {
	p := &v1.EgressNATPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("policy-%04d", i)},
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
		p.Spec.AllowClusterOverlap = true // admission refuses the default route without it
	}
	return p
}

// parallel runs f for 0..n-1 on 16 workers and fails on the first error.
func parallel(b testing.TB, n int, f func(int) error) {
	b.Helper()
	if err := testenv.Parallel(n, 16, f); err != nil {
		b.Fatal(err)
	}
}

// procStatus reads a size of process pid from /proc/<pid>/status, in bytes.
func procStatus(b testing.TB, pid int, field string) int64 {
	b.Helper()
	v, err := testenv.ProcStatus(pid, field)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// getBody GETs url and returns the body of a 200 response.
func getBody(c *http.Client, url string) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, err
}

// serverGCs reads how many garbage collections the aggregated API server has run, from
// its Prometheus metrics.
func serverGCs(b *testing.B, c *http.Client) int {
	b.Helper()
	metrics, err := getBody(c, serverURL+"/metrics")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(metrics)) {
		if count, ok := strings.CutPrefix(line, "go_gc_duration_seconds_count "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(count))
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("the server's /metrics has no go_gc_duration_seconds_count")
	return 0
}
