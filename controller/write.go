package controller

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	"github.com/egressgw/egressgw/controller/placement"
)

// write applies a decision: the grants first, then the gateways' and the policies'
// status, each with its events. A failed write does not stop the others; the pass then
// fails, and the next one writes what is still different.
func (r *Reconciler) write(ctx context.Context, d decision, start time.Time) (reconcile.Result, error) {
	var errs []error
	if err := r.writeGrants(ctx, d.grantWrites); err != nil {
		errs = append(errs, err)
	}
	for _, c := range d.floatingIPs {
		floatingIPs.WithLabelValues(c.gateway, "assigned").Set(float64(c.assigned))
		floatingIPs.WithLabelValues(c.gateway, "unassigned").Set(float64(c.unassigned))
	}
	for _, w := range d.gateways {
		if err := r.writeGatewayStatus(ctx, w); err != nil {
			errs = append(errs, err)
		}
	}
	for _, w := range d.policies {
		if err := r.writePolicyStatus(ctx, w); err != nil {
			errs = append(errs, err)
		}
	}
	reconcileSeconds.Observe(time.Since(start).Seconds())
	klog.V(3).InfoS("Placement pass", "took", time.Since(start), "waiting", d.grants.waiting, "errors", len(errs))
	if len(errs) > 0 {
		return reconcile.Result{}, fmt.Errorf("writing status: %w", errs[0])
	}
	if r.answers != nil {
		r.answers.passCompleted()
	}
	now := time.Now()
	for _, m := range d.moves {
		recordMove(m)
		if down, ok := r.tracker.DownAt(m.From); ok && m.Reason == placement.MoveNodeDown && m.To != "" {
			failoverSeconds.Observe(now.Sub(down).Seconds())
		}
	}
	var res reconcile.Result
	if !d.requeueAt.IsZero() {
		// A deadline the pass itself outlasted is due at once; zero would mean never.
		res.RequeueAfter = max(time.Until(d.requeueAt), time.Millisecond)
	}
	return res, nil
}

// writeGrants writes the node specs in the order given, and stops at the first that fails:
// a later spec may grant what an earlier one was to take away.
func (r *Reconciler) writeGrants(ctx context.Context, writes []grantWrite) error {
	for _, w := range writes {
		updated := w.obj.DeepCopy()
		updated.Spec.FloatingIPs = w.want
		// Written from the version read: a grant computed from a stale cache fails.
		if err := r.client.Patch(ctx, updated, client.MergeFromWithOptions(w.obj, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("granting node %s its floating IPs %v: %w", w.obj.Name, w.want, err)
		}
		klog.V(3).InfoS("Granted floating IPs", "node", w.obj.Name, "floatingIPs", w.want, "generation", updated.Generation)
		if r.fresh != nil {
			r.fresh.wrote(kindReport, updated)
		}
		if r.answers != nil {
			r.answers.wrote(w.obj.Name, updated.Generation)
		}
	}
	return nil
}

// writeGatewayStatus patches a gateway's status and, once it is written, records its events.
func (r *Reconciler) writeGatewayStatus(ctx context.Context, w gatewayWrite) error {
	updated := w.obj.DeepCopyObject().(client.Object)
	kind := kindGroup
	switch o := updated.(type) {
	case *v1.NetworkGatewayGroup:
		o.Status = w.status
	case *v1alpha1.AnthosNetworkGateway:
		o.Status = w.status
		kind = kindLegacy
	}
	// Written from the version read: a write computed from a stale cache fails.
	if err := r.client.Status().Patch(ctx, updated, client.MergeFromWithOptions(w.obj, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("%s: %w", w.id, err)
	}
	if r.fresh != nil {
		r.fresh.wrote(kind, updated)
	}
	r.record(w.events)
	klog.V(2).InfoS("Wrote gateway status", "gateway", w.id.String(), "floatingIPs", w.status.FloatingIPs)
	return nil
}

// writePolicyStatus patches a policy's status and, once it is written, records its events.
func (r *Reconciler) writePolicyStatus(ctx context.Context, w policyWrite) error {
	updated := w.obj.DeepCopy()
	updated.Status = w.status
	if err := r.client.Status().Patch(ctx, updated, client.MergeFromWithOptions(w.obj, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("EgressNATPolicy %s: %w", w.obj.Name, err)
	}
	if r.fresh != nil {
		r.fresh.wrote(kindPolicy, updated)
	}
	r.record(w.events)
	return nil
}

func (r *Reconciler) record(events []event) {
	for _, e := range events {
		r.events.Eventf(e.obj, nil, e.typ, e.reason, e.action, "%s", e.message)
	}
}
