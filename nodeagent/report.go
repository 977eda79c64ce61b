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
	keys *beatKeys // nil without the direct channel
	last string    // what the report last said
}

// passReport is what a pass has to report.
type passReport struct {
	ifaces      []Interface
	held        []netip.Addr
	observedGen int64
	// passErr is what failed in the pass, and full what its maps refused (empty if nothing).
	passErr error
	full    string
	// served are the pod addresses to list, and uncovered the PodsCovered message (empty
	// if every pod is covered).
	served    []netip.Prefix
	uncovered string
	// unreachable is the EgressReachable message (empty if every selected pod reaches
	// its egress IPs).
	unreachable string
	// redirected are the pods whose interface carries another program.
	redirected []string
	// copies are the standbys' copies of this node's connections (standby.go).
	copies []v1.StandbyCopy
}

// report writes the report of a pass, and says whether it wrote.
func (r *reporter) report(ctx context.Context, p passReport) (bool, error) {
	reason, msg := "Programmed", fmt.Sprintf("dataplane programmed; holding %d floating IPs", len(p.held))
	switch {
	case p.passErr != nil:
		reason, msg = "DataplaneError", p.passErr.Error()
	case p.full != "":
		reason, msg = ConditionCapacityExceeded, fmt.Sprintf("dataplane programmed but for what its maps refuse (see %s); holding %d floating IPs", ConditionCapacityExceeded, len(p.held))
	}
	var keys []string
	var version uint64
	if r.keys != nil {
		keys, version = r.keys.list()
	}
	key := fmt.Sprint(p.ifaces, p.held, p.observedGen, msg, p.full, keys, p.served, p.uncovered, p.unreachable, p.redirected, p.copies)
	if key == r.last {
		return false, nil
	}
	s := nodeStatus{Interfaces: p.ifaces, Held: p.held, ObservedGeneration: p.observedGen, Ready: p.passErr == nil && p.full == "",
		Reason: reason, Message: msg, CapacityExceeded: p.full, HeartbeatKeys: keys, Served: p.served, Uncovered: p.uncovered, Unreachable: p.unreachable,
		Redirected: p.redirected, Copies: p.copies}
	if err := r.w.Report(ctx, s); err != nil {
		return false, err
	}
	if r.keys != nil {
		r.keys.wrote(version)
	}
	r.last = key
	return true, nil
}

// publishKeys writes the heartbeat keys alone, before the first pass.
func (r *reporter) publishKeys(ctx context.Context) error {
	if r.keys == nil {
		return nil
	}
	keys, version := r.keys.list()
	if err := r.w.PublishKeys(ctx, keys); err != nil {
		return err
	}
	r.keys.wrote(version)
	return nil
}

// conditions are the Ready, CapacityExceeded, PodsCovered and EgressReachable conditions
// of a report.
func conditions(s nodeStatus) []metav1.Condition {
	ready := metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: s.Reason, Message: s.Message, ObservedGeneration: s.ObservedGeneration}
	if !s.Ready {
		ready.Status = metav1.ConditionFalse
	}
	full := metav1.Condition{Type: ConditionCapacityExceeded, Status: metav1.ConditionFalse, Reason: "WithinLimits",
		Message: "every map and id space of the dataplane holds what this node needs", ObservedGeneration: s.ObservedGeneration}
	if s.CapacityExceeded != "" {
		full.Status, full.Reason, full.Message = metav1.ConditionTrue, "MapFull", s.CapacityExceeded
	}
	covered := metav1.Condition{Type: ConditionPodsCovered, Status: metav1.ConditionTrue, Reason: "AllCovered",
		Message: "the fail-closed backstop and the gateways' source filter cover every pod of this node", ObservedGeneration: s.ObservedGeneration}
	if s.Uncovered != "" {
		covered.Status, covered.Reason, covered.Message = metav1.ConditionFalse, "PodsUncovered", s.Uncovered
	}
	reachable := metav1.Condition{Type: ConditionEgressReachable, Status: metav1.ConditionTrue, Reason: "AllReachable",
		Message: "this node reaches the egress IPs of all its selected pods, on their subnets or through routers", ObservedGeneration: s.ObservedGeneration}
	if s.Unreachable != "" {
		reachable.Status, reachable.Reason, reachable.Message = metav1.ConditionFalse, "NoRouteToEgressIP", s.Unreachable
	}
	return []metav1.Condition{ready, full, covered, reachable}
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

// read reads the NetworkGatewayNode once, creating it if needed, for the conditions the
// reports carry over.
func (r *apiStatusWriter) read(ctx context.Context) error {
	if r.known {
		return nil
	}
	c := r.client.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace)
	obj, err := c.Get(ctx, r.node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obj, err = c.Create(ctx, &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: r.node, Namespace: networking.NodeNamespace}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("reading NetworkGatewayNode %s/%s: %w", networking.NodeNamespace, r.node, err)
	}
	r.conditions, r.known = obj.Status.Conditions, true
	return nil
}

func (r *apiStatusWriter) PublishKeys(ctx context.Context, keys []string) error {
	if err := r.read(ctx); err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"heartbeatKeys": keys}})
	if err != nil {
		return err
	}
	_, err = r.client.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace).Patch(ctx, r.node, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		r.known = false
	}
	if err != nil {
		return fmt.Errorf("publishing the heartbeat keys in NetworkGatewayNode %s/%s: %w", networking.NodeNamespace, r.node, err)
	}
	return nil
}

func (r *apiStatusWriter) Report(ctx context.Context, s nodeStatus) error {
	c := r.client.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace)
	if err := r.read(ctx); err != nil {
		return err
	}
	status := v1.NetworkGatewayNodeStatus{Conditions: append([]metav1.Condition(nil), r.conditions...), ObservedGeneration: s.ObservedGeneration}
	for _, i := range s.Interfaces {
		ni := v1.NodeInterface{Name: i.Name, MAC: i.MAC}
		for _, s := range i.Subnets {
			ni.Subnets = append(ni.Subnets, s.String())
		}
		for _, r := range i.Routers {
			ni.Routers = append(ni.Routers, r.String())
		}
		status.Interfaces = append(status.Interfaces, ni)
	}
	for _, ip := range s.Held {
		status.FloatingIPs = append(status.FloatingIPs, ip.String())
	}
	for _, p := range s.Served {
		status.ServedPodAddresses = append(status.ServedPodAddresses, p.String())
	}
	status.HeartbeatKeys = s.HeartbeatKeys
	status.RedirectedPods = s.Redirected[:min(len(s.Redirected), maxRedirectedPods)]
	status.StandbyCopies = s.Copies
	for _, cond := range conditions(s) {
		meta.SetStatusCondition(&status.Conditions, cond)
	}
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
