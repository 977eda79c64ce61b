package server

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"
	genericoptions "k8s.io/apiserver/pkg/server/options"

	"github.com/egressgw/egressgw/apiserver/aggregated/registry/watchlimit"
	"github.com/egressgw/egressgw/apiserver/aggregated/view"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/certs"
)

// Options are the server's flags. The serving, authentication and authorization options
// are k8s.io/apiserver's own: delegated to kube-apiserver through TokenReview and
// SubjectAccessReview.
type Options struct {
	SecureServing  *genericoptions.SecureServingOptionsWithLoopback
	Authentication *genericoptions.DelegatingAuthenticationOptions
	Authorization  *genericoptions.DelegatingAuthorizationOptions
	Features       *genericoptions.FeatureOptions

	// Kubeconfig reaches kube-apiserver; empty means in-cluster.
	Kubeconfig string
	// ClusterCIDRs are never steered (the service CIDRs), as the node agents are told.
	ClusterCIDRs []string
	// Certificates: the Secret that holds the CA and serving certificate, the Service
	// whose DNS names it carries, and the APIService its CA bundle is published to.
	Namespace, SecretName, ServiceName, APIService string
	// WatchHistory is how many recent changes a watch can resume from.
	WatchHistory int
	// MaxWatchesPerUser is how many watches one user may hold open; more are refused
	// with 429.
	MaxWatchesPerUser int

	// clusterCIDRs and dnsNames are set by Complete.
	clusterCIDRs []netip.Prefix
	dnsNames     []string
}

// NewOptions returns the defaults, fit for the manifests in artifacts/apiserver.
func NewOptions() *Options {
	o := &Options{
		SecureServing:  genericoptions.NewSecureServingOptions().WithLoopback(),
		Authentication: genericoptions.NewDelegatingAuthenticationOptions(),
		Authorization:  genericoptions.NewDelegatingAuthorizationOptions(),
		Features:       genericoptions.NewFeatureOptions(),
		Namespace:      "egressgw-system",
		SecretName:     "egressgw-apiserver-certs",
		ServiceName:    "egressgw-apiserver",
		APIService:     v1alpha1.SchemeGroupVersion.Version + "." + v1alpha1.SchemeGroupVersion.Group,
		WatchHistory:   view.DefaultWatchHistory,

		MaxWatchesPerUser: watchlimit.DefaultPerUser,
	}
	o.SecureServing.BindPort = 8443
	// kube-apiserver applies priority and fairness before it proxies here.
	o.Features.EnablePriorityAndFairness = false
	// kube-apiserver's aggregator multiplexes many requests over one HTTP/2 connection.
	o.SecureServing.HTTP2MaxStreamsPerConnection = 1000
	return o
}

// AddFlags adds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.SecureServing.AddFlags(fs)
	o.Authentication.AddFlags(fs)
	o.Authorization.AddFlags(fs)
	o.Features.AddFlags(fs)
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig to reach kube-apiserver with; empty means in-cluster")
	fs.StringSliceVar(&o.ClusterCIDRs, "cluster-cidrs", o.ClusterCIDRs, "IPv4 CIDRs inside the cluster that are never steered (services, and pod pools the Nodes' spec.podCIDRs miss), as given to the node agents; every Node's pod CIDRs and InternalIPs, and the node subnets the agents report, are added")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the Service and the certificate Secret")
	fs.StringVar(&o.SecretName, "secret-name", o.SecretName, "Secret that holds the CA and the serving certificate")
	fs.StringVar(&o.ServiceName, "service-name", o.ServiceName, "the Service kube-apiserver reaches this server through; the certificate carries its DNS names")
	fs.StringVar(&o.APIService, "apiservice", o.APIService, "the APIService whose spec.caBundle this server keeps current")
	fs.IntVar(&o.WatchHistory, "watch-history", o.WatchHistory, "how many recent changes a watch can resume from")
	fs.IntVar(&o.MaxWatchesPerUser, strings.TrimPrefix(watchlimit.Flag, "--"), o.MaxWatchesPerUser, "how many watches one user may hold open; more are refused with 429 Too Many Requests")
}

// Validate says what is wrong with the options, naming the flag to fix.
func (o *Options) Validate() error {
	var errs []error
	errs = append(errs, o.SecureServing.Validate()...)
	errs = append(errs, o.Authentication.Validate()...)
	errs = append(errs, o.Authorization.Validate()...)
	errs = append(errs, o.Features.Validate()...)
	for _, raw := range o.ClusterCIDRs {
		if p, err := netip.ParsePrefix(strings.TrimSpace(raw)); err != nil || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("--cluster-cidrs: %q is not an IPv4 CIDR such as 10.96.0.0/12", raw))
		}
	}
	for flag, v := range map[string]string{"--namespace": o.Namespace, "--secret-name": o.SecretName, "--service-name": o.ServiceName, "--apiservice": o.APIService} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", flag))
		}
	}
	if o.WatchHistory < 1 {
		errs = append(errs, fmt.Errorf("--watch-history %d must be at least 1", o.WatchHistory))
	}
	if o.MaxWatchesPerUser < 1 {
		errs = append(errs, fmt.Errorf("%s %d must be at least 1", watchlimit.Flag, o.MaxWatchesPerUser))
	}
	return errors.Join(errs...)
}

// Complete derives what the options imply: the parsed CIDRs and the certificate's names.
func (o *Options) Complete() error {
	o.clusterCIDRs = nil
	for _, raw := range o.ClusterCIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("--cluster-cidrs: %w", err)
		}
		o.clusterCIDRs = append(o.clusterCIDRs, p.Masked())
	}
	o.dnsNames = certs.ServiceDNSNames(o.ServiceName, o.Namespace)
	return nil
}
