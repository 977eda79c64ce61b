package nodeagent

import (
	"context"
	"fmt"
	"net/netip"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
)

// apiReporter writes the node's NetworkGatewayNode, creating it if needed. Its status is
// the node's word to the controller: the subnets it can hold IPs on, and the IPs it holds
// now (a planned move waits for the old node to list an IP no more).
type apiReporter struct {
	client versioned.Interface
	node   string
}

func (r apiReporter) Report(ctx context.Context, ifaces []Interface, held []netip.Addr, observedGeneration int64, ready bool, message string) error {
	// The controller writes the spec meanwhile; a conflict is retried at once, not a
	// second later, because a handover waits for this write.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		return r.report(ctx, ifaces, held, observedGeneration, ready, message)
	})
}

func (r apiReporter) report(ctx context.Context, ifaces []Interface, held []netip.Addr, observedGeneration int64, ready bool, message string) error {
	c := r.client.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace)
	obj, err := c.Get(ctx, r.node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obj, err = c.Create(ctx, &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: r.node, Namespace: networking.NodeNamespace}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("reading NetworkGatewayNode %s/%s: %w", networking.NodeNamespace, r.node, err)
	}
	status := v1.NetworkGatewayNodeStatus{Conditions: obj.Status.Conditions, ObservedGeneration: observedGeneration}
	for _, i := range ifaces {
		ni := v1.NodeInterface{Name: i.Name, MAC: i.MAC}
		for _, s := range i.Subnets {
			ni.Subnets = append(ni.Subnets, s.String())
		}
		status.Interfaces = append(status.Interfaces, ni)
	}
	for _, ip := range held {
		status.FloatingIPs = append(status.FloatingIPs, ip.String())
	}
	cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Programmed", Message: message, ObservedGeneration: obj.Generation}
	if !ready {
		cond.Status, cond.Reason = metav1.ConditionFalse, "DataplaneError"
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	obj.Status = status
	_, err = c.UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	return err
}
