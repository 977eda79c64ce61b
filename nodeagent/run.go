package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	"github.com/egressgw/egressgw/apiserver/metricsauth"
)

// connect builds the agent's clients of the API server from cfg: the informers and
// direct reads of opts's node, its heartbeat Lease and its NetworkGatewayNode status.
func connect(cfg *rest.Config, opts *Options) (api, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return api{}, err
	}
	net, err := versioned.NewForConfig(cfg)
	if err != nil {
		return api{}, err
	}
	// The heartbeat has a client of its own, without client-side throttling: a renewal
	// queued behind the agent's other requests would let the grant lapse.
	beatCfg := rest.CopyConfig(cfg)
	beatCfg.QPS = -1
	beatKube, err := kubernetes.NewForConfig(beatCfg)
	if err != nil {
		return api{}, err
	}
	c := newCaches(kube, net, opts)
	return api{
		view:   c,
		direct: c,
		leases: apiLeases{c: beatKube.CoordinationV1().Leases(networking.NodeNamespace)},
		status: &apiStatusWriter{client: net, node: opts.NodeName},
	}, nil
}

// run starts the informers, and runs the heartbeat and the passes until ctx ends. It
// leaves the kernel state in place when it returns: programs stay attached and IPs stay
// until their grant lapses, so a restart interrupts nothing.
func (a *Agent) run(ctx context.Context) error {
	if err := a.cluster.Start(ctx, a.wake.kick); err != nil {
		return err
	}
	// A restarted agent numbers its tables as before, so its first Sync changes nothing.
	if pods, egressIDs, err := a.tables.maps.Numbering(); err != nil {
		klog.ErrorS(err, "Reading the dataplane's numbering; numbering afresh")
	} else {
		a.tables.builder.Seed(pods, egressIDs)
	}
	if err := a.grants.restore(); err != nil {
		return err
	}
	a.grants.start(ctx)
	if a.standbys != nil {
		if err := a.standbys.run(ctx); err != nil {
			return err
		}
	}
	klog.InfoS("Node agent started", "node", a.opts.NodeName,
		"leaseDuration", a.opts.Heartbeat.LeaseDuration, "renewInterval", a.opts.Heartbeat.RenewInterval)
	go a.grants.renewLoop(ctx)
	a.loop(ctx)
	return nil
}

// serveProbes serves /healthz (the process runs) and /readyz (the last pass programmed
// everything), for the kubelet: nothing more, as anyone on the node network reaches them.
func serveProbes(ctx context.Context, addr string, ready func() error) (string, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listening for probes on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Probe server stopped")
		}
	}()
	return ln.Addr().String(), nil
}

// serveMetrics serves /metrics of the registry controller-runtime's metrics server serves
// (crmetrics.Registry), over TLS with a self-signed certificate, to clients that
// authenticate with a token and may get /metrics (TokenReview and SubjectAccessReview, as
// kube-rbac-proxy does): the agent runs on the host network, where every pod and host on
// the node network could read them otherwise, and they tell how the heartbeats go.
func serveMetrics(ctx context.Context, addr string, cfg *rest.Config) error {
	if addr == "0" {
		return nil
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	srv, err := metricsserver.NewServer(metricsserver.Options{BindAddress: addr, SecureServing: true,
		FilterProvider: metricsauth.Filter}, cfg, httpClient)
	if err != nil {
		return fmt.Errorf("serving metrics on %s: %w", addr, err)
	}
	go func() {
		if err := srv.Start(ctx); err != nil {
			klog.ErrorS(err, "Metrics server stopped")
		}
	}()
	return nil
}

// newRegistry is the registry the metrics server serves, with the Go runtime's and the
// process's metrics.
func newRegistry() prometheus.Registerer {
	reg := crmetrics.Registry
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			klog.ErrorS(err, "Registering a metrics collector")
		}
	}
	return reg
}

// signal wakes whoever waits on c, without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
