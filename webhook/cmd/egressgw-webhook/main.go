// Command egressgw-webhook serves admission and CRD conversion for networking.gke.io.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/egressgw/egressgw/webhook"
)

func main() {
	opts := webhook.Options{}
	service := flag.String("service-name", "egressgw-webhook", "the webhook Service, whose DNS names the serving certificate carries")
	flag.StringVar(&opts.Host, "host", "", "address to serve TLS on (empty: all)")
	flag.IntVar(&opts.Port, "port", 9443, "port to serve TLS on")
	flag.StringVar(&opts.Namespace, "namespace", envOr("POD_NAMESPACE", "egressgw-system"), "namespace of the Service and the certificate Secret")
	flag.StringVar(&opts.SecretName, "secret-name", "egressgw-webhook-certs", "Secret that holds the CA and serving certificate")
	flag.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "address of /metrics; 0 disables")
	flag.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 disables")
	klog.InitFlags(nil)
	flag.Parse()
	opts.DNSNames = serviceNames(*service, opts.Namespace)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		klog.ErrorS(err, "egressgw-webhook failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, opts webhook.Options) error {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	server, err := webhook.New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	return server.Start(ctx)
}

func serviceNames(service, namespace string) []string {
	return []string{
		service,
		fmt.Sprintf("%s.%s", service, namespace),
		fmt.Sprintf("%s.%s.svc", service, namespace),
		fmt.Sprintf("%s.%s.svc.cluster.local", service, namespace),
	}
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
