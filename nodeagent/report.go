package nodeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
)

// reporter writes the node's report when what it says changes: a pass that changed
// nothing writes nothing.
type reporter struct {
	w    statusWriter
	last string // what the report last said
}

// report writes the report of a pass that ended with passErr, and says whether it wrote.
func (r *reporter) report(ctx context.Context, ifaces []Interface, held []netip.Addr, observedGen int64, passErr error) (bool, error) {
	msg := fmt.Sprintf("dataplane programmed; holding %d floating IPs", len(held))
	if passErr != nil {
		msg = passErr.Error()
	}
	key := fmt.Sprint(ifaces, held, observedGen, msg)
	if key == r.last {
		return false, nil
	}
	s := nodeStatus{Interfaces: ifaces, Held: held, ObservedGeneration: observedGen, Ready: passErr == nil, Message: msg}
	if err := r.w.Report(ctx, s); err != nil {
		return false, err
	}
	r.last = key
	return true, nil
}

// apiStatusWriter writes the node's NetworkGatewayNode, creating it if needed. Its status is
// the node's word to the controller: the subnets it can hold IPs on, and the IPs it holds
// now (a planned move waits for the old node to list an IP no more).
//
// The status is the agent's alone, so it is replaced whole, in one request and without
// reading it first: a handover waits for this write. The conditions are carried over from
// the last write (read once, after a restart) so that a transition time stays put.
type apiStatusWriter struct {
	client     versioned.Interface
	node       string
	conditions []metav1.Condition
	known      bool // conditions holds what the API server has
}

var _ statusWriter = &apiStatusWriter{}

func (r *apiStatusWriter) Report(ctx context.Context, s nodeStatus) error {
	c := r.client.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace)
	if !r.known {
		obj, err := c.Get(ctx, r.node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj, err = c.Create(ctx, &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: r.node, Namespace: networking.NodeNamespace}}, metav1.CreateOptions{})
		}
		if err != nil {
			return fmt.Errorf("reading NetworkGatewayNode %s/%s: %w", networking.NodeNamespace, r.node, err)
		}
		r.conditions, r.known = obj.Status.Conditions, true
	}
	status := v1.NetworkGatewayNodeStatus{Conditions: append([]metav1.Condition(nil), r.conditions...), ObservedGeneration: s.ObservedGeneration}
	for _, i := range s.Interfaces {
		ni := v1.NodeInterface{Name: i.Name, MAC: i.MAC}
		for _, s := range i.Subnets {
			ni.Subnets = append(ni.Subnets, s.String())
		}
		status.Interfaces = append(status.Interfaces, ni)
	}
	for _, ip := range s.Held {
		status.FloatingIPs = append(status.FloatingIPs, ip.String())
	}
	cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Programmed", Message: s.Message, ObservedGeneration: s.ObservedGeneration}
	if !s.Ready {
		cond.Status, cond.Reason = metav1.ConditionFalse, "DataplaneError"
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	// "add" replaces /status whole: fields left out (no IPs held) are cleared, not kept.
	patch, err := json.Marshal([]map[string]any{{"op": "add", "path": "/status", "value": status}})
	if err != nil {
		return err
	}
	_, err = c.Patch(ctx, r.node, types.JSONPatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		r.known = false // deleted meanwhile: created again on the next report
	}
	if err != nil {
		return fmt.Errorf("writing the status of NetworkGatewayNode %s/%s: %w", networking.NodeNamespace, r.node, err)
	}
	r.conditions = status.Conditions
	return nil
}
