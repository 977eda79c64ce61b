package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/testenv"
	ourwebhook "github.com/egressgw/egressgw/webhook"
)

// BenchmarkAdmission measures the admission handler with 1,000 gateways (3 floating IPs
// each) and 10,000 policies in its informer caches, all written through the real
// kube-apiserver and the webhook itself. Each request is an AdmissionReview sent over
// HTTPS to the webhook server, so the figure includes TLS, decoding and the lookups.
// Target: p99 <= 2 ms. The addresses are in 198.18.0.0/15, the benchmarking range; these
// objects carry no traffic.
func BenchmarkAdmission(b *testing.B) {
	cp := controlplane.StartForTest(b)
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = 5000, 5000
	client := versioned.NewForConfigOrDie(cfg)
	ctx := context.Background()

	const gateways, policies = 1000, 10000
	start := time.Now()
	parallel(b, gateways, func(i int) error {
		_, err := client.NetworkingV1().NetworkGatewayGroups("kube-system").Create(ctx, benchGateway(i), metav1.CreateOptions{})
		return err
	})
	parallel(b, policies, func(i int) error {
		_, err := client.NetworkingV1().EgressNATPolicies().Create(ctx, benchPolicy(i, i%gateways), metav1.CreateOptions{})
		return err
	})
	b.Logf("wrote %d gateways and %d policies through the webhook in %s", gateways, policies, time.Since(start).Round(time.Millisecond))

	post := webhookClient(b, cp)
	requests := map[string]struct {
		path string
		req  *admissionv1.AdmissionRequest
	}{
		"create gateway (3 new IPs)": {ourwebhook.PathNetworkGatewayGroup, review(b, admissionv1.Create, benchGateway(gateways+1), nil)},
		"create gateway (conflict)":  {ourwebhook.PathNetworkGatewayGroup, review(b, admissionv1.Create, benchGatewayIPs("dup", 7), nil)},
		"update gateway (first IP changes, 10 policies use it)": {ourwebhook.PathNetworkGatewayGroup,
			review(b, admissionv1.Update, benchGatewayIPs("gw-0500", 5000, 1500, 1501), benchGateway(500))},
		"create policy": {ourwebhook.PathPolicy, review(b, admissionv1.Create, benchPolicy(policies+1, 500), nil)},
		// The baseline: the same transport, TLS and decoding, and no lookup at all.
		"baseline: delete policy (no lookups)": {ourwebhook.PathPolicy, review(b, admissionv1.Delete, benchPolicy(7, 7), nil)},
	}
	names := make([]string, 0, len(requests))
	for name, r := range requests {
		names = append(names, name)
		// Warm up: TLS sessions, the informers' first reads, and let the API server and
		// etcd, which share these two cores, finish digesting the bulk load.
		for range 500 {
			post(r.path, r.req)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		r := requests[name]
		b.Run(name, func(b *testing.B) {
			var latencies []time.Duration
			for b.Loop() {
				t0 := time.Now()
				post(r.path, r.req)
				latencies = append(latencies, time.Since(t0))
			}
			slices.Sort(latencies)
			p := func(q float64) float64 {
				return float64(latencies[int(q*float64(len(latencies)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(p(0.5), "p50-ms")
			b.ReportMetric(p(0.99), "p99-ms")
		})
	}
}

func benchIP(n int) string { return fmt.Sprintf("198.18.%d.%d", n>>8, n&255) }

func benchGatewayIPs(name string, ips ...int) *v1.NetworkGatewayGroup {
	g := &v1.NetworkGatewayGroup{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.gke.io/v1", Kind: "NetworkGatewayGroup"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"},
	}
	for _, n := range ips {
		g.Spec.FloatingIPs = append(g.Spec.FloatingIPs, benchIP(n))
	}
	return g
}

func benchGateway(i int) *v1.NetworkGatewayGroup {
	return benchGatewayIPs(fmt.Sprintf("gw-%04d", i), 3*i+1, 3*i+2, 3*i+3)
}

func benchPolicy(i, gateway int) *v1.EgressNATPolicy {
	return &v1.EgressNATPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.gke.io/v1", Kind: "EgressNATPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("policy-%05d", i)},
		Spec: v1.EgressNATPolicySpec{
			Sources: []v1.EgressSource{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprint(i % 50)}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint(i)}},
			}},
			Action:       v1.ActionSNAT,
			Destinations: []v1.Destination{{CIDR: fmt.Sprintf("203.0.%d.0/24", i%256)}},
			GatewayRef:   &v1.GatewayReference{Name: fmt.Sprintf("gw-%04d", gateway), Namespace: "kube-system"},
		},
	}
}

// parallel runs f for 0..n-1 on 16 workers and fails on the first error.
func parallel(b *testing.B, n int, f func(int) error) {
	b.Helper()
	if err := testenv.Parallel(n, 16, f); err != nil {
		b.Fatal(err)
	}
}

func review(b *testing.B, op admissionv1.Operation, obj, old runtime.Object) *admissionv1.AdmissionRequest {
	b.Helper()
	raw := func(o runtime.Object) runtime.RawExtension {
		if o == nil {
			return runtime.RawExtension{}
		}
		data, err := json.Marshal(o)
		if err != nil {
			b.Fatal(err)
		}
		return runtime.RawExtension{Raw: data}
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	meta := obj.(metav1.Object)
	req := &admissionv1.AdmissionRequest{
		UID:       types.UID("bench"),
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Operation: op, Name: meta.GetName(), Namespace: meta.GetNamespace(),
		Object: raw(obj), OldObject: raw(old),
	}
	if op == admissionv1.Delete { // a deletion carries the object as it was
		req.Object, req.OldObject = runtime.RawExtension{}, raw(obj)
	}
	return req
}

// webhookClient returns a function that posts an AdmissionReview to the webhook server,
// trusting the CA the server published, and fails on a transport error.
func webhookClient(b *testing.B, cp *controlplane.ControlPlane) func(string, *admissionv1.AdmissionRequest) {
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	secret, err := kube.CoreV1().Secrets(controlplane.WebhookNamespace).Get(context.Background(), "egressgw-webhook-certs", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		b.Fatal("no CA in the webhook's Secret")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return func(path string, req *admissionv1.AdmissionRequest) {
		body, err := json.Marshal(&admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request:  req,
		})
		if err != nil {
			b.Fatal(err)
		}
		resp, err := client.Post(cp.WebhookURL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var out admissionv1.AdmissionReview
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || out.Response == nil {
			b.Fatalf("bad AdmissionReview response: %v", err)
		}
		if r := out.Response.Result; r != nil && r.Code >= 500 || r != nil && r.Code == http.StatusBadRequest {
			b.Fatalf("the webhook could not handle the request: %s", r.Message)
		}
	}
}
