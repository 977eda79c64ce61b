package certs

import (
	"errors"
	"fmt"
	"net"
	"time"

	"k8s.io/utils/clock"
)

// Defaults for the zero values of Options.
const (
	DefaultCAValidity    = 10 * 365 * 24 * time.Hour
	DefaultCertValidity  = 365 * 24 * time.Hour
	DefaultCheckInterval = time.Hour
	DefaultPublishDelay  = 2 * time.Minute
)

// Options say where the certificates live, what they are for, and whom to tell.
type Options struct {
	// Namespace and SecretName name the Secret that holds the CA and serving certificate.
	Namespace, SecretName string
	// DNSNames and IPs are what the serving certificate is valid for.
	DNSNames []string
	IPs      []net.IP
	// ValidatingWebhookConfigurations get the CA bundle in every one of their webhooks.
	ValidatingWebhookConfigurations []string
	// CRDs get the CA bundle in spec.conversion.webhook.clientConfig.
	CRDs []string
	// APIServices get the CA bundle in spec.caBundle. They need NewWithAPIServices.
	APIServices []string
	// CAValidity and CertValidity are certificate lifetimes; each is renewed once less
	// than a third of it remains. CertValidity may be at most a third of CAValidity.
	CAValidity, CertValidity time.Duration
	// CheckInterval is how often Run re-checks when nothing prompts it sooner.
	CheckInterval time.Duration
	// PublishDelay is how long a new CA must have been in every published bundle before
	// the serving certificate switches to one it signed: the time kube-apiservers need to
	// see the new caBundle.
	PublishDelay time.Duration
	// Clock tells the time; nil means the real clock.
	Clock clock.Clock
}

// complete fills in defaults and rejects options the Manager could not honour.
func (o Options) complete() (Options, error) {
	if o.CAValidity == 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.CertValidity == 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.PublishDelay == 0 {
		o.PublishDelay = DefaultPublishDelay
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}

	var errs []error
	if o.Namespace == "" || o.SecretName == "" {
		errs = append(errs, errors.New("namespace and secret name are required: they name the Secret that holds the certificates"))
	}
	if len(o.DNSNames) == 0 && len(o.IPs) == 0 {
		errs = append(errs, errors.New("at least one DNS name or IP is required for the serving certificate"))
	}
	for i, name := range o.DNSNames {
		if name == "" {
			errs = append(errs, fmt.Errorf("dnsNames[%d] is empty", i))
		}
	}
	for i, ip := range o.IPs {
		if ip.To16() == nil {
			errs = append(errs, fmt.Errorf("ips[%d] is not an IP address: %q", i, ip))
		}
	}
	if o.CAValidity < 0 || o.CertValidity < 0 || o.CheckInterval < 0 || o.PublishDelay < 0 {
		errs = append(errs, errors.New("validities, check interval and publish delay must not be negative"))
	}
	// A CA is replaced with a third of its life left. A serving certificate it signed just
	// before then must not outlive it, or it would stop verifying before its own renewal.
	if o.CertValidity > o.CAValidity/3 {
		errs = append(errs, fmt.Errorf("certificate validity %s is more than a third of CA validity %s: shorten it or lengthen the CA's", o.CertValidity, o.CAValidity))
	}
	return o, errors.Join(errs...)
}
