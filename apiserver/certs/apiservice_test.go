package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregatorfake "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset/fake"
)

const (
	testAPIService  = "v1alpha1.egress.egressgw.io"
	localAPIService = "v1.networking.gke.io"
)

// apiServiceFixture is the webhook fixture plus an aggregated API server's APIService,
// and a local APIService that kube-apiserver serves itself.
func apiServiceFixture(t *testing.T) (*fixture, *aggregatorfake.Clientset) {
	t.Helper()
	f := newFixture(t)
	agg := aggregatorfake.NewClientset(
		&apiregistrationv1.APIService{
			ObjectMeta: metav1.ObjectMeta{Name: testAPIService},
			Spec: apiregistrationv1.APIServiceSpec{
				Group: "egress.egressgw.io", Version: "v1alpha1",
				Service: &apiregistrationv1.ServiceReference{Namespace: testNamespace, Name: "egressgw-apiserver"},
			},
		},
		&apiregistrationv1.APIService{
			ObjectMeta: metav1.ObjectMeta{Name: localAPIService},
			Spec:       apiregistrationv1.APIServiceSpec{Group: "networking.gke.io", Version: "v1"},
		},
	)
	f.opts.ValidatingWebhookConfigurations, f.opts.CRDs = nil, nil
	f.opts.APIServices = []string{testAPIService, localAPIService}
	return f, agg
}

func apiServiceBundle(t *testing.T, agg *aggregatorfake.Clientset, name string) []byte {
	t.Helper()
	svc, err := agg.ApiregistrationV1().APIServices().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.CABundle
}

// TestAPIServiceBundle checks what kube-apiserver's aggregator needs to verify an
// aggregated API server: the APIService carries a bundle that trusts the served
// certificate, through a CA rotation, and nothing else is written.
func TestAPIServiceBundle(t *testing.T) {
	f, agg := apiServiceFixture(t)
	m, err := NewWithAPIServices(f.kube, f.crds, agg, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	verifies := func() error {
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(apiServiceBundle(t, agg, testAPIService)) {
			t.Fatal("the APIService has no CA bundle")
		}
		_, err := served(t, m).Verify(x509.VerifyOptions{Roots: roots, DNSName: testDNSNames[1], CurrentTime: f.clock.Now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		return err
	}

	f.ensure(t, m)
	if err := verifies(); err != nil {
		t.Fatalf("the published bundle does not trust the served certificate: %v", err)
	}
	if err := m.Ready(); err != nil {
		t.Errorf("not ready after publishing to the APIService: %v", err)
	}
	if got := apiServiceBundle(t, agg, localAPIService); got != nil {
		t.Errorf("a local APIService got a caBundle: kube-apiserver would refuse it")
	}

	agg.ClearActions()
	f.ensure(t, m)
	for _, a := range agg.Actions() {
		if a.GetVerb() == "patch" {
			t.Errorf("a second Ensure patched %s again", a.GetResource().Resource)
		}
	}

	// Past the CA's rotation point: the new CA must reach the APIService before any
	// certificate it signs is served, and the served one must verify on every check.
	first := bundleCAs(t, m.CABundle())[0]
	for range 9 * 12 {
		f.clock.Step(30 * 24 * time.Hour)
		f.ensure(t, m)
		if err := verifies(); err != nil {
			t.Fatalf("at %s: %v", f.clock.Now().Format(time.DateOnly), err)
		}
	}
	if now := bundleCAs(t, m.CABundle())[0]; now.Equal(first) {
		t.Fatal("the CA never rotated; the test proves nothing")
	}
	if !bytes.Equal(apiServiceBundle(t, agg, testAPIService), m.CABundle()) {
		t.Error("the APIService does not carry the current bundle")
	}
}

func TestNewWithAPIServicesNeedsTheClient(t *testing.T) {
	f, _ := apiServiceFixture(t)
	if _, err := NewWithAPIServices(f.kube, f.crds, nil, f.opts); err == nil || !strings.Contains(err.Error(), "apiregistration") {
		t.Errorf("err = %v, want one asking for an apiregistration client", err)
	}
}
