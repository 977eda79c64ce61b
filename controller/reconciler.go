package controller

import (
	"context"
	"time"

	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/egressgw/egressgw/controller/liveness"
)

// Reconciler recomputes the whole placement on every change: placement is global (an IP
// on one node changes where the next one goes), and a full pass takes milliseconds.
type Reconciler struct {
	client   client.Client
	events   events.EventRecorder
	tracker  *liveness.Tracker
	leaseSet map[string]bool // nodes with a Lease at the last pass
	// lapsed are nodes a pass saw Down whose agent has not yet reported on the grants
	// written since: their agent dropped every IP when its own grant lapsed, so what
	// their old report says they hold is void.
	lapsed map[string]bool
	// leading gates the passes: only the leader places. Nil means always.
	leading func() bool
	// answers learns of every pass and of every grant written; nil without heartbeats.
	answers *answerer
	// fresh holds passes back while the cache is behind; live reads the API server.
	fresh *freshness
	live  client.Reader
	// upBefore are the nodes the last pass saw Up: one that turns Down has its Lease
	// read from the API server first (confirmDown).
	upBefore map[string]bool
}

var _ reconcile.Reconciler = &Reconciler{}

// Reconcile runs one pass: gather the inputs, decide, and write the decision.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	if r.leading != nil && !r.leading() {
		return reconcile.Result{}, nil
	}
	start := time.Now()
	in, err := r.gather(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	return r.write(ctx, decide(in), start)
}
