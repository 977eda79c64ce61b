package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/egressgw/egressgw/apiserver/certs"
	"github.com/egressgw/egressgw/webhook/validation"
)

// Options configure the webhook server: the flags of egressgw-webhook.
type Options struct {
	// Kubeconfig reaches kube-apiserver; empty means $KUBECONFIG, then in-cluster.
	Kubeconfig string
	// Host and Port are where the TLS server listens.
	Host string
	Port int
	// Namespace and SecretName hold the CA and serving certificate; ServiceName is the
	// Service kube-apiserver reaches the webhook through.
	Namespace, SecretName, ServiceName string
	// DNSNames and IPs are the serving certificate's names: the Service's DNS names in a
	// cluster (Complete derives them from ServiceName), an address in tests.
	DNSNames []string
	IPs      []net.IP
	// MetricsAddr serves /metrics; ProbeAddr serves /healthz and /readyz. "0" disables.
	MetricsAddr, ProbeAddr string
	// PodCIDRs and ServiceCIDRs are the cluster's pod and service ranges (IPv4 CIDRs): no
	// floating IP may be in them, and a destination may cover them only with the policy's
	// allowClusterOverlap. Every Node's spec.podCIDRs and every reported node subnet count
	// too, so PodCIDRs is needed only where the IPAM does not follow spec.podCIDRs.
	PodCIDRs, ServiceCIDRs []string
}

// NewOptions returns the defaults, fit for the manifests in artifacts/webhook.
func NewOptions() *Options {
	namespace := os.Getenv("POD_NAMESPACE")
	if namespace == "" {
		namespace = "egressgw-system"
	}
	return &Options{
		Port:        9443,
		Namespace:   namespace,
		SecretName:  "egressgw-webhook-certs",
		ServiceName: "egressgw-webhook",
		MetricsAddr: ":8443",
		ProbeAddr:   ":8081",
	}
}

// AddFlags adds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig to reach kube-apiserver with; empty means $KUBECONFIG, then in-cluster")
	fs.StringVar(&o.Host, "host", o.Host, "address to serve TLS on (empty: all)")
	fs.IntVar(&o.Port, "port", o.Port, "port to serve TLS on")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the Service and the certificate Secret; defaults to $POD_NAMESPACE when set")
	fs.StringVar(&o.SecretName, "secret-name", o.SecretName, "Secret that holds the CA and serving certificate")
	fs.StringVar(&o.ServiceName, "service-name", o.ServiceName, "the webhook Service, whose DNS names the serving certificate carries")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "address of /metrics, over TLS, for clients with a token that may get /metrics; 0 disables")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "address of /healthz and /readyz; 0 disables")
	fs.StringSliceVar(&o.PodCIDRs, "pod-cidrs", o.PodCIDRs, "comma-separated IPv4 CIDRs of the cluster's pods, if its IPAM does not follow the Nodes' spec.podCIDRs (those are added); no floating IP may be in them")
	fs.StringSliceVar(&o.ServiceCIDRs, "service-cidrs", o.ServiceCIDRs, "comma-separated IPv4 CIDRs of the cluster's services (kube-apiserver's --service-cluster-ip-range); no floating IP may be in them")
}

// clusterCIDRs parses PodCIDRs and ServiceCIDRs. Empty items are skipped, so that an
// empty variable in the manifests' "--pod-cidrs=$(POD_CIDRS)" means none.
func (o *Options) clusterCIDRs() ([]validation.ClusterCIDR, error) {
	var out []validation.ClusterCIDR
	var errs []error
	for _, f := range []struct {
		flag, key string // the flag, and the egressgw-config key an installation sets it from
		list      []string
		kind      validation.CIDRKind
	}{{"--pod-cidrs", "POD_CIDRS", o.PodCIDRs, validation.CIDRPods}, {"--service-cidrs", "SERVICE_CIDRS", o.ServiceCIDRs, validation.CIDRServices}} {
		for _, raw := range f.list {
			raw = strings.TrimSpace(raw)
			if raw == "" {
				continue
			}
			p, err := netip.ParsePrefix(raw)
			if err != nil || !p.Addr().Is4() {
				errs = append(errs, fmt.Errorf("%s: %q is not an IPv4 CIDR such as 10.96.0.0/12", f.flag, raw))
				continue
			}
			out = append(out, validation.ClusterCIDR{Prefix: p.Masked(), Kind: f.kind, Source: f.flag + ", " + f.key + " in ConfigMap egressgw-config"})
		}
	}
	return out, errors.Join(errs...)
}

// Validate says what is wrong with the options, naming the flag to fix.
func (o *Options) Validate() error {
	var errs []error
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d must be a TCP port, 1 to 65535", o.Port))
	}
	for flag, v := range map[string]string{"--namespace": o.Namespace, "--secret-name": o.SecretName, "--service-name": o.ServiceName} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", flag))
		}
	}
	if _, err := o.clusterCIDRs(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Complete derives what the options imply: the certificate's DNS names, from the Service.
func (o *Options) Complete() error {
	if len(o.DNSNames) == 0 && len(o.IPs) == 0 {
		o.DNSNames = certs.ServiceDNSNames(o.ServiceName, o.Namespace)
	}
	return nil
}

// Run validates and completes the options, and serves until ctx ends.
func Run(ctx context.Context, o *Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if err := o.Complete(); err != nil {
		return err
	}
	cfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	server, err := New(ctx, cfg, *o)
	if err != nil {
		return err
	}
	return server.Start(ctx)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return ctrl.GetConfig()
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}
