package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	apiextensionsclientset "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	aggregatorclientset "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/clock"
)

// maxAttempts bounds how often one Ensure re-reads the Secret after another writer beat
// it; more than that means something keeps rewriting the Secret, and Run backs off.
const maxAttempts = 5

// Manager keeps the webhook's certificates current and serves them. Every replica runs
// one; they agree through the Secret, which is the only shared state.
type Manager struct {
	secrets     secretStore
	secretWatch cache.ListerWatcher
	publisher   publisher
	policy      policy
	clock       clock.Clock
	interval    time.Duration

	// ensureMu makes Ensure calls take turns, and guards gate and switchAt.
	ensureMu sync.Mutex
	gate     switchGate
	switchAt time.Time

	// state is what GetCertificate, CABundle and Ready read, swapped whole.
	state atomic.Pointer[snapshot]
}

// snapshot is what the Manager serves, and what it last saw published.
type snapshot struct {
	cert *tls.Certificate
	// bundle is ca.crt of the Secret cert was read from.
	bundle []byte
	// published is the bundle last seen on every target, as roots; nil before then.
	published *x509.CertPool
}

// New returns a Manager for the Secret and targets in opts. It does no I/O.
func New(kube kubernetes.Interface, crds apiextensionsclientset.Interface, opts Options) (*Manager, error) {
	return NewWithAPIServices(kube, crds, nil, opts)
}

// NewWithAPIServices is New for a server that kube-apiserver reaches through APIServices
// too, as an aggregated API server: apiServices publishes to opts.APIServices.
func NewWithAPIServices(kube kubernetes.Interface, crds apiextensionsclientset.Interface, apiServices aggregatorclientset.Interface, opts Options) (*Manager, error) {
	if kube == nil || crds == nil {
		return nil, errors.New("certs.New needs a Kubernetes and an apiextensions client")
	}
	var apiServiceClient apiServiceClient
	if len(opts.APIServices) > 0 {
		if apiServices == nil {
			return nil, errors.New("publishing to APIServices needs an apiregistration client")
		}
		apiServiceClient = apiServices.ApiregistrationV1().APIServices()
	}
	opts, err := opts.complete()
	if err != nil {
		return nil, fmt.Errorf("invalid certificate options: %w", err)
	}
	secrets := kube.CoreV1().Secrets(opts.Namespace)
	return &Manager{
		secrets:     secretStore{client: secrets, namespace: opts.Namespace, name: opts.SecretName},
		secretWatch: watchOne(secrets, opts.SecretName, kube),
		publisher: publisher{
			webhooks:     kube.AdmissionregistrationV1().ValidatingWebhookConfigurations(),
			crds:         crds.ApiextensionsV1().CustomResourceDefinitions(),
			webhookNames: opts.ValidatingWebhookConfigurations,
			crdNames:     opts.CRDs,

			apiServices:     apiServiceClient,
			apiServiceNames: opts.APIServices,
		},
		policy: policy{
			caValidity:   opts.CAValidity,
			certValidity: opts.CertValidity,
			dnsNames:     opts.DNSNames,
			ips:          opts.IPs,
		},
		clock:    opts.Clock,
		interval: opts.CheckInterval,
		gate:     switchGate{delay: opts.PublishDelay},
	}, nil
}

// Ensure brings the Secret, the published bundles and the served certificate up to date,
// once. It is safe to call from several goroutines and on several replicas at once.
func (m *Manager) Ensure(ctx context.Context) error {
	m.ensureMu.Lock()
	defer m.ensureMu.Unlock()
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		if err = m.ensureOnce(ctx); !errors.Is(err, errLostRace) {
			return err
		}
		klog.V(2).InfoS("Another writer changed the certificate Secret; re-reading it", "secret", m.secretRef(), "attempt", attempt)
	}
	return fmt.Errorf("gave up after %d attempts: %w", maxAttempts, err)
}

// ensureOnce is one read-decide-write pass. Its order is what keeps the certificate every
// replica serves trusted by every kube-apiserver, which checks it against the caBundle it
// last read from the webhook configuration or CRD:
//
//  1. Rotate the CA if due. The new CA goes first in ca.crt; the old one stays behind it
//     until it expires, because certificates it signed are still served, by this replica
//     and by those that have not re-read the Secret yet. Renew the serving certificate
//     here only where that changes no trust: the current one is unusable anyway, or the
//     CA signing the new one signed the old one too. Write the Secret; load.
//  2. Publish ca.crt to every target. Until that has succeeded, a certificate from the
//     new CA would be rejected, so nothing moves to one.
//  3. Only after step 2 succeeded, and once the gate says the bundle has been out for
//     PublishDelay (time for every kube-apiserver's watch to deliver it), move a
//     still-good serving certificate to the new CA. Write the Secret; load.
//
// A crash or a lost race between steps leaves a state the next pass resumes from: the
// Secret holds a new CA before any certificate it signed, and a restarted process starts
// the gate's wait over, which can delay a move but never hasten one.
func (m *Manager) ensureOnce(ctx context.Context) error {
	now := m.clock.Now()
	secret, err := m.secrets.get(ctx)
	if err != nil {
		return err
	}

	// Step 1.
	data, reasons := secret.Data, []string(nil)
	ca, err := m.policy.rotateCA(data, now)
	if err != nil {
		return err
	}
	if ca.data != nil {
		data, reasons = ca.data, append(reasons, ca.reason)
	}
	serving, err := m.policy.renewServing(data, now, false)
	if err != nil {
		return err
	}
	if serving.data != nil {
		data, reasons = serving.data, append(reasons, serving.reason)
	}
	if secret, err = m.writeIfChanged(ctx, secret, data, reasons); err != nil {
		return err
	}
	if err := m.load(secret.Data); err != nil {
		return err
	}

	// Step 2.
	bundle := secret.Data[keyCACert]
	patched, err := m.publisher.publish(ctx, bundle)
	if err != nil {
		return err
	}
	signer, err := parseCertificates(bundle)
	if err != nil {
		return fmt.Errorf("reading the CA bundle just written: %w", err)
	}
	m.gate.published(signer[0], patched, now)
	m.setPublished(signer)
	if err := m.load(secret.Data); err != nil {
		return err
	}

	// Step 3.
	m.switchAt = time.Time{}
	if !serving.waiting {
		return nil
	}
	if openAt := m.gate.openAt(signer[0]); now.Before(openAt) {
		m.switchAt = openAt
		klog.InfoS("Waiting for the new CA bundle to reach every kube-apiserver before serving a certificate from the new CA",
			"secret", m.secretRef(), "switchAt", openAt)
		return nil
	}
	moved, err := m.policy.renewServing(secret.Data, now, true)
	if err != nil {
		return err
	}
	if secret, err = m.writeIfChanged(ctx, secret, moved.data, []string{moved.reason}); err != nil {
		return err
	}
	return m.load(secret.Data)
}

// writeIfChanged writes data unless it is nil.
func (m *Manager) writeIfChanged(ctx context.Context, secret storedSecret, data map[string][]byte, reasons []string) (storedSecret, error) {
	if len(reasons) == 0 || data == nil {
		return secret, nil
	}
	written, err := m.secrets.write(ctx, secret, data)
	if err != nil {
		return storedSecret{}, err
	}
	klog.InfoS("Updated the webhook certificate Secret", "secret", m.secretRef(), "reasons", reasons)
	return written, nil
}

// load serves the certificate in data, unless the bundle last published does not trust
// it yet while it still trusts the one being served: then the old one is kept until the
// next publish. That only happens when the Secret lost its CA (deleted, or broken), which
// forces a certificate from a new CA out before its bundle is published.
func (m *Manager) load(data map[string][]byte) error {
	pair, err := loadKeyPair(data)
	if err != nil {
		return fmt.Errorf("loading the serving certificate from Secret %s: %w", m.secretRef(), err)
	}
	now := m.clock.Now()
	next := snapshot{cert: pair, bundle: bytes.Clone(data[keyCACert])}
	if old := m.state.Load(); old != nil {
		next.published = old.published
		switch {
		case bytes.Equal(old.cert.Certificate[0], pair.Certificate[0]):
			next.cert = old.cert
		case old.published != nil && verify(pair.Leaf, old.published, now) != nil &&
			verify(old.cert.Leaf, old.published, now) == nil:
			next.cert = old.cert
			klog.V(2).InfoS("Holding back a certificate from an unpublished CA", "secret", m.secretRef())
		}
	}
	if next.cert == pair {
		klog.InfoS("Serving a new webhook certificate", "secret", m.secretRef(),
			"serial", pair.Leaf.SerialNumber.Text(16), "issuer", pair.Leaf.Issuer.CommonName, "notAfter", pair.Leaf.NotAfter)
	}
	m.state.Store(&next)
	return nil
}

// setPublished records the bundle every target now carries.
func (m *Manager) setPublished(bundle []*x509.Certificate) {
	next := *m.state.Load()
	next.published = pool(bundle)
	m.state.Store(&next)
}

// GetCertificate returns the certificate to serve, for tls.Config.GetCertificate. It
// changes as the Manager rotates, with no restart.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s := m.state.Load()
	if s == nil {
		return nil, errors.New("the webhook serving certificate is not loaded yet")
	}
	return s.cert, nil
}

// CABundle returns the PEM bundle that should trust the served certificate: the one the
// Manager publishes. It is nil before the Secret is first read.
func (m *Manager) CABundle() []byte {
	if s := m.state.Load(); s != nil {
		return bytes.Clone(s.bundle)
	}
	return nil
}

// Ready returns nil once a certificate is served and a bundle that trusts it has been
// published. A later failure to publish does not unready a replica whose certificate the
// published bundle still trusts: taking every replica out of service over an API hiccup
// would cause the outage readiness is meant to prevent.
func (m *Manager) Ready() error {
	s := m.state.Load()
	switch {
	case s == nil:
		return errors.New("the webhook serving certificate is not loaded yet")
	case s.published == nil:
		return fmt.Errorf("the webhook CA bundle is not published yet to %s", m.publisher)
	}
	if err := verify(s.cert.Leaf, s.published, m.clock.Now()); err != nil {
		return fmt.Errorf("the published CA bundle does not trust the served certificate: %w", err)
	}
	return nil
}

// nextSwitch is when a waiting move to a new CA may happen, or the zero time.
func (m *Manager) nextSwitch() time.Time {
	m.ensureMu.Lock()
	defer m.ensureMu.Unlock()
	return m.switchAt
}

func (m *Manager) secretRef() klog.ObjectRef {
	return klog.KRef(m.secrets.namespace, m.secrets.name)
}
