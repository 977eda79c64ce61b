package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	crevent "sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/egressgw/egressgw/apiserver/apis/networking/install"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/apiserver/metricsauth"
	"github.com/egressgw/egressgw/controller/liveness"
)

// everything is the one work item: every change leads to one full pass.
var everything = reconcile.Request{NamespacedName: types.NamespacedName{Name: "placement"}}

// Controller is the manager that runs the controller.
type Controller struct {
	manager.Manager
	elected chan struct{}
}

// Elected is closed when this replica first leads (at once without leader election).
func (c *Controller) Elected() <-chan struct{} { return c.elected }

// New validates and completes the options and wires the controller into a manager,
// ready to Start.
func New(cfg *rest.Config, opts Options) (*Controller, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := opts.Complete(); err != nil {
		return nil, err
	}
	scheme, err := install.NewScheme()
	if err != nil {
		return nil, err
	}
	if err := RegisterMetrics(); err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                 scheme,
		Metrics:                securedMetrics(opts.MetricsAddr),
		HealthProbeBindAddress: opts.ProbeAddr,
		// The election is ours (elector): the leader answers heartbeats through an API
		// server outage, which controller-runtime's would end by exiting.
		LeaderElection: false,
		Logger:         klog.NewKlogr().WithName("controller"),
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&coordinationv1.Lease{}:  {Namespaces: map[string]cache.Config{LeaseNamespace: {}}},
			&v1.NetworkGatewayNode{}: {Namespaces: map[string]cache.Config{NodeReportNamespace: {}}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	r := &Reconciler{
		client:  mgr.GetClient(),
		events:  mgr.GetEventRecorder("egressgw-controller"),
		tracker: liveness.NewTracker(clock.RealClock{}, opts.Grace),
		fresh:   newFreshness(),
		live:    mgr.GetAPIReader(),
	}
	wake := make(chan crevent.GenericEvent, 1)
	kick := func() {
		select {
		case wake <- crevent.GenericEvent{Object: &v1.NetworkGatewayNode{}}:
		default:
		}
	}
	term := func() (uint64, bool) { return 1, true }
	// This replica's heartbeat key, made at every start; agents read it from the holder
	// identity of the leader election Lease.
	key, err := heartbeat.NewKeyPair()
	if err != nil {
		return nil, err
	}
	elected := make(chan struct{})
	var electedOnce sync.Once
	if !opts.LeaderElection {
		close(elected)
	} else {
		e, err := newElector(cfg, opts.Election, opts.heartbeatIdentity(key.Public), func(term uint64, fence time.Time) {
			r.tracker.Fence(fence)
			r.fresh.won()
			leading.WithLabelValues("answering").Set(float64(term))
			electedOnce.Do(func() { close(elected) })
			kick()
		})
		if err != nil {
			return nil, fmt.Errorf("setting up the leader election: %w", err)
		}
		placing := leading.WithLabelValues("placing")
		r.leading = func() bool {
			l := e.leading.Load()
			placing.Set(0)
			if l {
				placing.Set(1)
			}
			return l
		}
		term = e.answering
		if err := mgr.Add(manager.RunnableFunc(e.run)); err != nil {
			return nil, err
		}
	}
	if opts.HeartbeatAddr != "" {
		r.answers = newAnswerer(r.tracker, term, kick, key)
		srv, err := listenBeats(opts.HeartbeatAddr, r.answers.reply, func(reason string) {
			beatsDropped.WithLabelValues(reason).Inc()
		})
		if err != nil {
			return nil, err
		}
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			srv.Serve(ctx)
			return nil
		})); err != nil {
			return nil, err
		}
	}
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{everything}
	})
	b := ctrl.NewControllerManagedBy(mgr).Named("placement").
		WithOptions(crcontroller.Options{SkipNameValidation: ptr.To(opts.SeveralInProcess)}).
		WatchesRawSource(source.Channel(wake, all))
	for _, obj := range []client.Object{
		&v1.NetworkGatewayGroup{}, &v1alpha1.AnthosNetworkGateway{}, &v1.NetworkGatewayNode{},
		&corev1.Node{}, &coordinationv1.Lease{}, &v1.EgressNATPolicy{},
	} {
		b = b.Watches(obj, all)
	}
	if err := b.Complete(r); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return &Controller{Manager: mgr, elected: elected}, nil
}

// securedMetrics serves /metrics over TLS (a self-signed certificate) to clients that
// authenticate with a token and may get /metrics (TokenReview and SubjectAccessReview,
// as kube-rbac-proxy does): the metrics say which nodes hold which IPs, and how often
// the heartbeats come. artifacts/ has a ClusterRole that allows it.
func securedMetrics(addr string) metricsserver.Options {
	return metricsserver.Options{BindAddress: addr, SecureServing: true, FilterProvider: metricsauth.Filter}
}
