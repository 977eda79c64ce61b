package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sort"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsfake "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

const (
	testNamespace = "egressgw-system"
	testSecret    = "egressgw-webhook-certs"
	testVWC       = "egressgw-validating-webhook"
	testCRD       = "egressnatpolicies.networking.gke.io"
	plainCRD      = "plain.networking.gke.io"
	day           = 24 * time.Hour
	year          = 365 * day
)

var (
	epoch        = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)
	testDNSNames = []string{
		"egressgw-webhook",
		"egressgw-webhook.egressgw-system.svc",
		"egressgw-webhook.egressgw-system.svc.cluster.local",
	}
	testIPs     = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.96.0.10")}
	testWebhook = []string{"a.validate.egressgw.io", "b.validate.egressgw.io", "c.validate.egressgw.io"}
)

// fixture is a fake cluster holding the webhook configuration and CRDs, and a fake clock.
type fixture struct {
	kube  *kubefake.Clientset
	crds  *apiextensionsfake.Clientset
	clock *clocktesting.FakeClock
	opts  Options
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: testVWC}}
	for _, name := range testWebhook {
		path := "/validate"
		vwc.Webhooks = append(vwc.Webhooks, admissionregistrationv1.ValidatingWebhook{
			Name: name,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Namespace: testNamespace, Name: "egressgw-webhook", Path: &path},
			},
		})
	}
	converted := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: testCRD},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{Conversion: &apiextensionsv1.CustomResourceConversion{
			Strategy: apiextensionsv1.WebhookConverter,
			Webhook: &apiextensionsv1.WebhookConversion{
				ConversionReviewVersions: []string{"v1"},
				ClientConfig: &apiextensionsv1.WebhookClientConfig{
					Service: &apiextensionsv1.ServiceReference{Namespace: testNamespace, Name: "egressgw-webhook"},
				},
			},
		}},
	}
	plain := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: plainCRD},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{Conversion: &apiextensionsv1.CustomResourceConversion{
			Strategy: apiextensionsv1.NoneConverter,
		}},
	}
	clock := clocktesting.NewFakeClock(epoch)
	return &fixture{
		kube:  kubefake.NewClientset(vwc),
		crds:  apiextensionsfake.NewClientset(converted, plain),
		clock: clock,
		opts: Options{
			Namespace:                       testNamespace,
			SecretName:                      testSecret,
			DNSNames:                        testDNSNames,
			IPs:                             testIPs,
			ValidatingWebhookConfigurations: []string{testVWC},
			CRDs:                            []string{testCRD, plainCRD},
			Clock:                           clock,
		},
	}
}

// manager is one replica running against the fixture.
func (f *fixture) manager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(f.kube, f.crds, f.opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// ensure runs m.Ensure and fails the test on error.
func (f *fixture) ensure(t *testing.T, m *Manager) {
	t.Helper()
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatalf("Ensure at %s: %v", f.clock.Now().Format(time.DateOnly), err)
	}
}

func (f *fixture) secret(t *testing.T) *corev1.Secret {
	t.Helper()
	s, err := f.kube.CoreV1().Secrets(testNamespace).Get(context.Background(), testSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the Secret: %v", err)
	}
	return s
}

// published is the caBundle of every target kube-apiserver would read, by target.
func (f *fixture) published(t *testing.T) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	vwc, err := f.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, testVWC, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the webhook configuration: %v", err)
	}
	out := map[string][]byte{}
	for _, w := range vwc.Webhooks {
		out["webhook "+w.Name] = w.ClientConfig.CABundle
	}
	crd, err := f.crds.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, testCRD, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the CRD: %v", err)
	}
	out["crd "+testCRD] = crd.Spec.Conversion.Webhook.ClientConfig.CABundle
	return out
}

// writes counts the create, update, patch and delete calls made to both fake clientsets,
// by "verb resource".
func (f *fixture) writes() map[string]int {
	out := map[string]int{}
	for _, a := range append(f.kube.Actions(), f.crds.Actions()...) {
		switch a.GetVerb() {
		case "create", "update", "patch", "delete":
			out[a.GetVerb()+" "+a.GetResource().Resource]++
		}
	}
	return out
}

func (f *fixture) clearActions() {
	f.kube.ClearActions()
	f.crds.ClearActions()
}

// otherReplicaSecret is a valid Secret that another replica wrote at now, in its own
// cluster, so the test can slip it into ours.
func otherReplicaSecret(t *testing.T, now time.Time) *corev1.Secret {
	t.Helper()
	other := newFixture(t)
	other.clock.SetTime(now)
	other.ensure(t, other.manager(t))
	return other.secret(t)
}

// served is the leaf of the certificate m serves.
func served(t *testing.T, m *Manager) *x509.Certificate {
	t.Helper()
	cert, err := m.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	return cert.Leaf
}

// requireServedTrusted fails unless every published bundle trusts the certificate m
// serves, for every name, at the fixture's time: what kube-apiserver checks on each call.
func (f *fixture) requireServedTrusted(t *testing.T, m *Manager) {
	t.Helper()
	if err := f.servedTrusted(t, m); err != nil {
		t.Fatalf("at %s: %v", f.clock.Now().Format(time.DateOnly), err)
	}
}

func (f *fixture) servedTrusted(t *testing.T, m *Manager) error {
	t.Helper()
	leaf := served(t, m)
	names := append([]string(nil), testDNSNames...)
	for _, ip := range testIPs {
		names = append(names, ip.String())
	}
	published := f.published(t)
	targets := make([]string, 0, len(published))
	for target := range published {
		targets = append(targets, target)
	}
	sort.Strings(targets)
	for _, target := range targets {
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(published[target]) {
			return fmt.Errorf("%s has no CA bundle", target)
		}
		for _, name := range names {
			_, err := leaf.Verify(x509.VerifyOptions{
				Roots: roots, DNSName: name, CurrentTime: f.clock.Now(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("%s does not trust the served certificate for %s: %w", target, name, err)
			}
		}
	}
	return nil
}

// bundleCAs parses a PEM bundle.
func bundleCAs(t *testing.T, bundle []byte) []*x509.Certificate {
	t.Helper()
	certs, err := parseCertificates(bundle)
	if err != nil {
		t.Fatalf("parsing a CA bundle: %v", err)
	}
	return certs
}

// issuerIndex is the position in bundle of the CA that signed leaf, or -1.
func issuerIndex(leaf *x509.Certificate, bundle []*x509.Certificate) int {
	for i, ca := range bundle {
		if leaf.CheckSignatureFrom(ca) == nil {
			return i
		}
	}
	return -1
}

// failing is a reactor that fails every verb on resource with err, n times (n < 0: always).
func failing(n int, err error) k8stesting.ReactionFunc {
	return func(k8stesting.Action) (bool, runtime.Object, error) {
		if n == 0 {
			return false, nil, nil
		}
		n--
		return true, nil, err
	}
}
