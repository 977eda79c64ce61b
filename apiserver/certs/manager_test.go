package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEnsure(t *testing.T) {
	tests := []struct {
		name string
		// before prepares the cluster; nil starts with no Secret.
		before func(t *testing.T, f *fixture)
		// want counts the writes Ensure makes.
		want map[string]int
		// wantKept says the Secret must come out exactly as before.
		wantKept bool
		// wantCAs is how many CAs the bundle holds afterwards.
		wantCAs int
	}{
		{
			name: "no Secret: creates it and publishes to every webhook and the conversion CRD",
			want: map[string]int{
				"create secrets":                        1,
				"patch validatingwebhookconfigurations": 1,
				"patch customresourcedefinitions":       1,
			},
			wantCAs: 1,
		},
		{
			name:     "another replica already did everything: no writes at all",
			before:   func(t *testing.T, f *fixture) { f.ensure(t, f.manager(t)) },
			want:     map[string]int{},
			wantKept: true,
			wantCAs:  1,
		},
		{
			name: "valid Secret, bundles not yet published: Secret reused, targets patched",
			before: func(t *testing.T, f *fixture) {
				if err := f.kube.Tracker().Add(otherReplicaSecret(t, epoch)); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]int{
				"patch validatingwebhookconfigurations": 1,
				"patch customresourcedefinitions":       1,
			},
			wantKept: true,
			wantCAs:  1,
		},
		{
			name: "one webhook's bundle reset by hand: only its configuration is patched",
			before: func(t *testing.T, f *fixture) {
				f.ensure(t, f.manager(t))
				resetWebhookBundle(t, f)
			},
			want:     map[string]int{"patch validatingwebhookconfigurations": 1},
			wantKept: true,
			wantCAs:  1,
		},
		{
			name: "CA key unreadable: a new CA joins the bundle, the old one stays",
			before: func(t *testing.T, f *fixture) {
				secret := otherReplicaSecret(t, epoch)
				secret.Data[keyCAKey] = []byte("not a key")
				if err := f.kube.Tracker().Add(secret); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]int{
				"update secrets":                        1,
				"patch validatingwebhookconfigurations": 1,
				"patch customresourcedefinitions":       1,
			},
			wantCAs: 2,
		},
		{
			name: "Secret holds garbage: replaced wholesale",
			before: func(t *testing.T, f *fixture) {
				secret := &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: testSecret},
					Data:       map[string][]byte{keyCACert: []byte("x"), keyTLSCert: []byte("y")},
				}
				if err := f.kube.Tracker().Add(secret); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]int{
				"update secrets":                        1,
				"patch validatingwebhookconfigurations": 1,
				"patch customresourcedefinitions":       1,
			},
			wantCAs: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var before map[string][]byte
			if tt.before != nil {
				tt.before(t, f)
				before = f.secret(t).Data
			}
			f.clearActions()

			m := f.manager(t)
			f.ensure(t, m)

			if diff := cmp.Diff(tt.want, f.writes()); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			secret := f.secret(t)
			if tt.wantKept {
				if diff := cmp.Diff(before, secret.Data); diff != "" {
					t.Errorf("Secret changed (-before +after):\n%s", diff)
				}
			}
			if got := len(bundleCAs(t, secret.Data[keyCACert])); got != tt.wantCAs {
				t.Errorf("bundle holds %d CAs, want %d", got, tt.wantCAs)
			}
			for target, bundle := range f.published(t) {
				if !bytes.Equal(bundle, secret.Data[keyCACert]) {
					t.Errorf("%s carries a caBundle other than the Secret's ca.crt", target)
				}
			}
			if !bytes.Equal(m.CABundle(), secret.Data[keyCACert]) {
				t.Errorf("CABundle() is not the Secret's ca.crt")
			}
			pair, err := loadKeyPair(secret.Data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(served(t, m).Raw, pair.Leaf.Raw) {
				t.Errorf("the served certificate is not the Secret's tls.crt")
			}
			plain, err := f.crds.ApiextensionsV1().CustomResourceDefinitions().Get(context.Background(), plainCRD, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if plain.Spec.Conversion.Webhook != nil {
				t.Errorf("CRD %s without a conversion webhook got one: %+v", plainCRD, plain.Spec.Conversion.Webhook)
			}
			f.requireServedTrusted(t, m)
			if err := m.Ready(); err != nil {
				t.Errorf("Ready() = %v, want nil", err)
			}
		})
	}
}

func TestEnsureAgainWritesNothing(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t)
	f.ensure(t, m)
	f.clearActions()
	for range 3 {
		f.clock.Step(time.Hour)
		f.ensure(t, m)
	}
	if diff := cmp.Diff(map[string]int{}, f.writes()); diff != "" {
		t.Errorf("writes after the first Ensure (-want +got):\n%s", diff)
	}
}

func TestServingRenewal(t *testing.T) {
	tests := []struct {
		name  string
		after time.Duration
		// opts changes the options of the replica that runs after the wait.
		opts        func(*Options)
		wantRenewed bool
	}{
		{name: "two thirds of its life left: kept", after: 100 * day},
		{name: "just over a third left: kept", after: 240 * day},
		{name: "just under a third left: renewed", after: 245 * day, wantRenewed: true},
		{name: "expired: renewed", after: 400 * day, wantRenewed: true},
		{
			name:  "a DNS name added: reissued",
			after: day,
			opts: func(o *Options) {
				o.DNSNames = append(o.DNSNames[:len(o.DNSNames):len(o.DNSNames)], "webhook.example.com")
			},
			wantRenewed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.ensure(t, f.manager(t))
			first := f.secret(t).Data

			f.clock.Step(tt.after)
			if tt.opts != nil {
				tt.opts(&f.opts)
			}
			f.clearActions()
			m := f.manager(t)
			f.ensure(t, m)

			want := map[string]int{}
			if tt.wantRenewed {
				want["update secrets"] = 1
			}
			if diff := cmp.Diff(want, f.writes()); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			leaf := served(t, m)
			if renewed := !bytes.Equal(first[keyTLSCert], f.secret(t).Data[keyTLSCert]); renewed != tt.wantRenewed {
				t.Errorf("renewed = %t, want %t", renewed, tt.wantRenewed)
			}
			bundle := bundleCAs(t, m.CABundle())
			if !bytes.Equal(first[keyCACert], m.CABundle()) {
				t.Errorf("renewing the serving certificate changed the CA bundle")
			}
			if got := issuerIndex(leaf, bundle); got != 0 {
				t.Errorf("served certificate chains to bundle entry %d, want 0 (the signing CA)", got)
			}
			if tt.wantRenewed {
				if want := f.clock.Now().Add(DefaultCertValidity); !leaf.NotAfter.Equal(want) {
					t.Errorf("renewed certificate expires %s, want %s", leaf.NotAfter, want)
				}
			}
			for _, name := range f.opts.DNSNames {
				if err := leaf.VerifyHostname(name); err != nil {
					t.Errorf("served certificate: %v", err)
				}
			}
			f.requireServedTrusted(t, m)
		})
	}
}

func TestServedCertificateVerifiesForEveryName(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t)
	f.ensure(t, m)
	roots := pool(bundleCAs(t, f.published(t)["webhook "+testWebhook[0]]))

	tests := []struct {
		name       string
		serverName string
		wantErr    bool
	}{
		{name: "short service name", serverName: testDNSNames[0]},
		{name: "service.namespace.svc", serverName: testDNSNames[1]},
		{name: "fully qualified service name", serverName: testDNSNames[2]},
		{name: "IPv4 loopback", serverName: "127.0.0.1"},
		{name: "IPv6 loopback", serverName: "::1"},
		{name: "cluster IP", serverName: "10.96.0.10"},
		{name: "a name not asked for", serverName: "evil.example.com", wantErr: true},
		{name: "an IP not asked for", serverName: "10.96.0.11", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := handshake(m, roots, tt.serverName, f.clock.Now)
			if (err != nil) != tt.wantErr {
				t.Errorf("TLS handshake for %q: err = %v, wantErr %t", tt.serverName, err, tt.wantErr)
			}
		})
	}
}

// handshake runs a TLS handshake between a server that takes its certificate from m and a
// client that trusts roots, as kube-apiserver does with caBundle.
func handshake(m *Manager, roots *x509.CertPool, serverName string, now func() time.Time) error {
	clientConn, serverConn := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serverErr := make(chan error, 1)
	go func() {
		serverErr <- tls.Server(serverConn, &tls.Config{GetCertificate: m.GetCertificate}).HandshakeContext(ctx)
		serverConn.Close()
	}()
	client := tls.Client(clientConn, &tls.Config{RootCAs: roots, ServerName: serverName, Time: now})
	err := client.HandshakeContext(ctx)
	clientConn.Close()
	<-serverErr
	return err
}
