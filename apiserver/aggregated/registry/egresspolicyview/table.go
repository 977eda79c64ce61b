package egresspolicyview

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

var columns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "The EgressNATPolicy's name."},
	{Name: "Egress IP", Type: "string", Description: "The source address its traffic leaves with."},
	{Name: "Gateway Node", Type: "string", Description: "The node the controller placed the egress IP on."},
	{Name: "Held By", Type: "string", Description: "The nodes whose agents report the egress IP configured."},
	{Name: "Standby", Type: "string", Description: "The node the egress IP moves to if its holder fails, and the state of its copy of the holder's connections."},
	{Name: "Verdict", Type: "string", Description: "SNAT, or Drop when its traffic cannot leave with its egress IP."},
	{Name: "Pods", Type: "integer", Description: "How many pods it selects, in namespaces where you may get pods."},
	{Name: "Destinations", Type: "string", Description: "Its destination CIDRs."},
	{Name: "Age", Type: "string", Description: "The policy's age."},
	{Name: "Message", Type: "string", Priority: 1, Description: "Where its traffic leaves, or why it cannot."},
}

func table(obj runtime.Object) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: columns}
	add := func(v *v1alpha1.EgressPolicyView) {
		t.Rows = append(t.Rows, metav1.TableRow{Cells: row(v, time.Now()), Object: runtime.RawExtension{Object: v}})
	}
	switch o := obj.(type) {
	case *v1alpha1.EgressPolicyView:
		add(o)
		t.ResourceVersion = o.ResourceVersion
	case *v1alpha1.EgressPolicyViewList:
		for i := range o.Items {
			add(&o.Items[i])
		}
		t.ResourceVersion, t.Continue = o.ResourceVersion, o.Continue
	default:
		return nil, fmt.Errorf("cannot print %T as egresspolicyviews", obj)
	}
	return t, nil
}

func row(v *v1alpha1.EgressPolicyView, now time.Time) []any {
	age := "<unknown>"
	if !v.CreationTimestamp.IsZero() {
		age = duration.HumanDuration(now.Sub(v.CreationTimestamp.Time))
	}
	dests := "<none>"
	if n := len(v.Destinations); n > 4 {
		dests = strings.Join(v.Destinations[:4], ",") + fmt.Sprintf(" +%d more", n-4)
	} else if n > 0 {
		dests = strings.Join(v.Destinations, ",")
	}
	heldBy := "<none>"
	if len(v.HeldBy) > 0 {
		heldBy = strings.Join(v.HeldBy, ",")
	}
	standby := "<none>"
	if sb := v.Standby; sb != nil {
		standby = fmt.Sprintf("%s (%s)", sb.Node, sb.Copy)
	}
	return []any{v.Name, orNone(v.EgressIP), orNone(v.GatewayNode), heldBy, standby, string(v.Verdict), int64(v.SelectedPods), dests, age, v.Message}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
