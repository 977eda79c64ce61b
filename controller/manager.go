package controller

import (
	"context"
	"fmt"
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
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	"github.com/egressgw/egressgw/controller/liveness"
	"github.com/egressgw/egressgw/webhook"
)

// Options configure the controller.
type Options struct {
	// LeaderElection makes replicas take turns; LeaderElectionNamespace holds the Lease.
	LeaderElection          bool
	LeaderElectionNamespace string
	// Grace is how long past a heartbeat Lease's duration a node is still Up.
	Grace time.Duration
	// MetricsAddr serves /metrics; ProbeAddr serves /healthz and /readyz. "0" disables.
	MetricsAddr, ProbeAddr string
	// SeveralInProcess allows more than one replica in one process, as tests run them.
	SeveralInProcess bool
}

// everything is the one work item: every change leads to one full pass.
var everything = reconcile.Request{NamespacedName: types.NamespacedName{Name: "placement"}}

// New wires the controller into a manager, ready to Start.
func New(cfg *rest.Config, opts Options) (manager.Manager, error) {
	scheme, err := webhook.NewManagerScheme()
	if err != nil {
		return nil, err
	}
	if err := RegisterMetrics(); err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              "egressgw-controller",
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Logger:                        klog.NewKlogr().WithName("controller"),
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
	}
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{everything}
	})
	b := ctrl.NewControllerManagedBy(mgr).Named("placement").
		WithOptions(crcontroller.Options{SkipNameValidation: ptr.To(opts.SeveralInProcess)})
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
	return mgr, nil
}
