package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/egressgw/egressgw/apiserver/apis/networking/install"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/certs"
	"github.com/egressgw/egressgw/apiserver/metricsauth"
)

// Paths the webhook configurations in artifacts/webhook point at.
const (
	PathNetworkGatewayGroup  = "/validate-networking-gke-io-v1-networkgatewaygroup"
	PathAnthosNetworkGateway = "/validate-networking-gke-io-v1alpha1-anthosnetworkgateway"
	PathPolicy               = "/validate-networking-gke-io-v1-egressnatpolicy"
	PathLegacyPolicy         = "/validate-networking-gke-io-v1alpha1-egressnatpolicy"
)

// Names of the objects whose caBundle the server keeps current.
const (
	ValidatingWebhookConfiguration = "egressgw-validating-webhook"
	PolicyCRD                      = "egressnatpolicies.networking.gke.io"
)

// Server is the admission and conversion webhook server, ready to Start.
type Server struct {
	manager manager.Manager
	ready   map[string]healthz.Checker
}

// New wires the webhook server: certificates, informer indexes, handlers and probes.
func New(ctx context.Context, cfg *rest.Config, opts Options) (*Server, error) {
	scheme, err := install.NewScheme()
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	crds, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cm, err := certs.New(kube, crds, certs.Options{
		Namespace: opts.Namespace, SecretName: opts.SecretName,
		DNSNames: opts.DNSNames, IPs: opts.IPs,
		ValidatingWebhookConfigurations: []string{ValidatingWebhookConfiguration},
		CRDs:                            []string{PolicyCRD},
	})
	if err != nil {
		return nil, err
	}
	server := crwebhook.NewServer(crwebhook.Options{
		Host: opts.Host, Port: opts.Port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.GetCertificate = cm.GetCertificate
			c.MinVersion = tls.VersionTLS12
		}},
	})
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme: scheme,
		// Served as the controller's are: over TLS, to clients that may get /metrics.
		Metrics: metricsserver.Options{BindAddress: opts.MetricsAddr, SecureServing: true,
			FilterProvider: metricsauth.Filter},
		HealthProbeBindAddress: opts.ProbeAddr,
		WebhookServer:          server,
		Logger:                 klog.NewKlogr().WithName("webhook"),
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := RegisterIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, fmt.Errorf("registering informer indexes: %w", err)
	}
	reader := cacheThenLive{Reader: mgr.GetCache(), live: mgr.GetAPIReader()}
	configured, err := opts.clusterCIDRs()
	if err != nil {
		return nil, err
	}
	subnets := newSubnetSet(configured)
	informer, err := mgr.GetCache().GetInformer(ctx, &v1.NetworkGatewayNode{})
	if err != nil {
		return nil, fmt.Errorf("watching NetworkGatewayNodes: %w", err)
	}
	if _, err := informer.AddEventHandler(subnets.handler()); err != nil {
		return nil, err
	}
	nodes, err := mgr.GetCache().GetInformer(ctx, &corev1.Node{})
	if err != nil {
		return nil, fmt.Errorf("watching Nodes: %w", err)
	}
	if _, err := nodes.AddEventHandler(subnets.nodeHandler()); err != nil {
		return nil, err
	}
	// The manager runs its webhook server only once it has been asked for it.
	server = mgr.GetWebhookServer()
	server.Register(ConversionPath, NewConversionHandler(scheme))
	server.Register(PathNetworkGatewayGroup, admission.WithValidator(scheme, newGatewayValidator(reader, subnets)))
	server.Register(PathAnthosNetworkGateway, admission.WithValidator(scheme, newLegacyGatewayValidator(reader, subnets)))
	server.Register(PathPolicy, admission.WithValidator(scheme, newPolicyValidator(reader, subnets)))
	server.Register(PathLegacyPolicy, admission.WithValidator(scheme, newLegacyPolicyValidator(reader, subnets)))
	server.Register(AuthorizationPath, NewAuthorizationHandler(opts.Namespace))

	if err := mgr.Add(certRunnable{cm}); err != nil {
		return nil, err
	}
	checks := map[string]healthz.Checker{
		"webhook-server": server.StartedChecker(),
		"certificates":   func(*http.Request) error { return cm.Ready() },
		"informers": func(r *http.Request) error {
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			defer cancel()
			if !mgr.GetCache().WaitForCacheSync(ctx) {
				return errors.New("informer caches have not synced")
			}
			return nil
		},
	}
	for name, check := range checks {
		if err := mgr.AddReadyzCheck(name, check); err != nil {
			return nil, err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return &Server{manager: mgr, ready: checks}, nil
}

// Start serves until ctx ends.
func (s *Server) Start(ctx context.Context) error { return s.manager.Start(ctx) }

// Ready runs the readiness checks of /readyz: serving, with a published certificate and
// synced informers.
func (s *Server) Ready() error {
	req, _ := http.NewRequest(http.MethodGet, "/readyz", nil)
	var errs []error
	for name, check := range s.ready {
		if err := check(req); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// certRunnable keeps the certificates current on every replica, leader or not.
type certRunnable struct{ m *certs.Manager }

func (c certRunnable) Start(ctx context.Context) error { return c.m.Run(ctx) }
func (c certRunnable) NeedLeaderElection() bool        { return false }
