package podegress

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

// TableConvertor prints PodEgress for kubectl get: one row per pod.
type TableConvertor struct{}

var columns = []metav1.TableColumnDefinition{
	{Name: "Pod", Type: "string", Format: "name", Description: "The pod's name."},
	{Name: "Policy", Type: "string", Description: "The EgressNATPolicies that select the pod, in precedence order."},
	{Name: "Egress IP", Type: "string", Description: "The source address each policy's traffic leaves with."},
	{Name: "Gateway Node", Type: "string", Description: "The node each policy's traffic leaves through."},
	{Name: "Destinations", Type: "string", Description: "The pod's steered destinations; (drop) where a policy cannot leave."},
	{Name: "Other Traffic", Type: "string", Description: "What happens to the pod's traffic to other destinations outside the cluster."},
	{Name: "Age", Type: "string", Description: "The pod's age."},
	{Name: "Node", Type: "string", Priority: 1, Description: "The node the pod runs on."},
	{Name: "Pod IP", Type: "string", Priority: 1, Description: "The pod's IPv4 address."},
	{Name: "Overlaps", Type: "string", Priority: 1, Description: "Destinations several policies claim, and the winner."},
}

// maxCell is how many items a cell lists before it says how many more there are.
const maxCell = 4

// ConvertToTable implements rest.TableConvertor.
func (TableConvertor) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: columns}
	add := func(v *v1alpha1.PodEgress) {
		t.Rows = append(t.Rows, metav1.TableRow{Cells: Row(v, time.Now()), Object: runtime.RawExtension{Object: v}})
	}
	switch o := obj.(type) {
	case *v1alpha1.PodEgress:
		add(o)
		t.ResourceVersion = o.ResourceVersion
	case *v1alpha1.PodEgressList:
		t.Rows = make([]metav1.TableRow, 0, len(o.Items))
		for i := range o.Items {
			add(&o.Items[i])
		}
		t.ResourceVersion, t.Continue = o.ResourceVersion, o.Continue
	default:
		return nil, fmt.Errorf("cannot print %T as podegresses", obj)
	}
	return t, nil
}

// Row is one pod's cells, in the order of the columns.
func Row(v *v1alpha1.PodEgress, now time.Time) []any {
	var policies, ips, nodes, dests, overlaps []string
	for _, p := range v.Policies {
		policies = append(policies, p.Name)
		ips = append(ips, orNone(p.EgressIP))
		nodes = append(nodes, orNone(p.GatewayNode))
	}
	for _, r := range v.Routes {
		d := r.Destination
		if r.Verdict == v1alpha1.VerdictDrop {
			d += " (drop)"
		}
		dests = append(dests, d)
	}
	for _, o := range v.Overlaps {
		overlaps = append(overlaps, fmt.Sprintf("%s: %s over %s", o.Destination, o.Policy, strings.Join(o.Overridden, "+")))
	}
	other := "masquerade to " + orNone(v.OtherTraffic.NodeName)
	if v.OtherTraffic.NodeIP != "" {
		other += " (" + v.OtherTraffic.NodeIP + ")"
	}
	age := "<unknown>"
	if !v.CreationTimestamp.IsZero() {
		age = duration.HumanDuration(now.Sub(v.CreationTimestamp.Time))
	}
	return []any{v.Name, cell(policies), cell(ips), cell(nodes), cell(dests), other, age,
		orNone(v.Pod.NodeName), orNone(v.Pod.IP), cell(overlaps)}
}

func cell(items []string) string {
	if len(items) == 0 {
		return "<none>"
	}
	if len(items) > maxCell {
		return strings.Join(items[:maxCell], ",") + fmt.Sprintf(" +%d more", len(items)-maxCell)
	}
	return strings.Join(items, ",")
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
