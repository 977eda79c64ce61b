package egresspolicyview

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

type fakeViews struct {
	policies []v1alpha1.EgressPolicyView
	pods     map[string][]v1alpha1.PodEgress
}

func (f *fakeViews) PolicyView(name string) (*v1alpha1.EgressPolicyView, error) {
	for i := range f.policies {
		if f.policies[i].Name == name {
			return &f.policies[i], nil
		}
	}
	return nil, apierrors.NewNotFound(resource, name)
}

func (f *fakeViews) PolicyViews() (*v1alpha1.EgressPolicyViewList, error) {
	return &v1alpha1.EgressPolicyViewList{Items: append([]v1alpha1.EgressPolicyView(nil), f.policies...)}, nil
}

func (f *fakeViews) PolicyPods(name string) (*v1alpha1.PodEgressList, error) {
	if _, err := f.PolicyView(name); err != nil {
		return nil, err
	}
	return &v1alpha1.PodEgressList{Items: append([]v1alpha1.PodEgress(nil), f.pods[name]...)}, nil
}

func (f *fakeViews) PolicyPodsByNamespace(name string) (map[string]int32, error) {
	if _, err := f.PolicyView(name); err != nil {
		return nil, err
	}
	out := map[string]int32{}
	for _, p := range f.pods[name] {
		out[p.Namespace]++
	}
	return out, nil
}

// fakeAuthz lets each user get pods in the namespaces listed, "" being every namespace.
type fakeAuthz map[string][]string

func (f fakeAuthz) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	for _, ns := range f[a.GetUser().GetName()] {
		if a.GetVerb() == "get" && a.GetResource() == "pods" && ns == a.GetNamespace() {
			return authorizer.DecisionAllow, "", nil
		}
	}
	return authorizer.DecisionNoOpinion, "", nil
}

type recorder []string

func (r *recorder) AddWarning(_, text string) { *r = append(*r, text) }

func fixture() *fakeViews {
	pod := func(ns string) v1alpha1.PodEgress {
		return v1alpha1.PodEgress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "frontend"}}
	}
	return &fakeViews{
		policies: []v1alpha1.EgressPolicyView{
			{ObjectMeta: metav1.ObjectMeta{Name: "egress", Labels: map[string]string{"team": "web"}}, EgressIP: "198.51.100.100",
				GatewayNode: "node2", HeldBy: []string{"node2"}, Verdict: v1alpha1.VerdictSNAT, SelectedPods: 3,
				Destinations: []string{"8.8.8.0/24"}, Standby: &v1alpha1.StandbyView{Node: "node3", Copy: "InSync", Entries: 12}},
			{ObjectMeta: metav1.ObjectMeta{Name: "orphan"}, EgressIP: "198.51.100.120", Verdict: v1alpha1.VerdictDrop},
		},
		pods: map[string][]v1alpha1.PodEgress{"egress": {pod("alice"), pod("bob"), pod("paul")}},
	}
}

var authz = fakeAuthz{"admin": {""}, "alice": {"alice"}, "alice-and-bob": {"alice", "bob"}}

func asUser(name string, warnings *recorder) context.Context {
	return warning.WithWarningRecorder(genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: name}), warnings)
}

func TestGetAndList(t *testing.T) {
	r := NewREST(fixture(), authz)
	if _, err := r.Get(asUser("admin", &recorder{}), "nope", &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("unknown policy: err = %v, want 404", err)
	}
	tests := []struct {
		name string
		opts *metainternalversion.ListOptions
		want []string
	}{
		{name: "all", want: []string{"egress", "orphan"}},
		{name: "label selector", opts: &metainternalversion.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{"team": "web"})}, want: []string{"egress"}},
		{name: "field selector on the gateway node", opts: &metainternalversion.ListOptions{FieldSelector: fields.OneTermEqualSelector("gatewayNode", "node2")}, want: []string{"egress"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := r.List(asUser("admin", &recorder{}), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range obj.(*v1alpha1.EgressPolicyViewList).Items {
				got = append(got, v.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodsShowsOnlyReadableNamespaces(t *testing.T) {
	tests := []struct {
		name    string
		user    string
		want    []string
		warning string
	}{
		{name: "a user of every namespace sees every pod", user: "admin", want: []string{"alice", "bob", "paul"}},
		// The warning is the same whatever was left out: it tells alice nothing of how many
		// pods the policy selects elsewhere, or where.
		{name: "alice sees her own, and is told the list is limited", user: "alice", want: []string{"alice"}, warning: "only the pods in namespaces where you may get pods are listed"},
		{name: "a user of no namespace sees none, and hears the same", user: "nobody", want: nil, warning: "only the pods in namespaces where you may get pods are listed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warnings recorder
			obj, err := NewPodsREST(fixture(), authz).Get(asUser(tt.user, &warnings), "egress", &metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range obj.(*v1alpha1.PodEgressList).Items {
				got = append(got, v.Namespace)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("namespaces (-want +got):\n%s", diff)
			}
			if tt.warning != "" && (len(warnings) != 1 || warnings[0] != tt.warning) {
				t.Errorf("warnings %q, want %q", warnings, tt.warning)
			}
			if tt.warning == "" && len(warnings) > 0 {
				t.Errorf("unexpected warnings %q", warnings)
			}
		})
	}
	if _, err := NewPodsREST(fixture(), authz).Get(context.Background(), "nope", &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("unknown policy: err = %v, want 404", err)
	}
}

// TestSelectedPodsCountsOnlyVisible: the count of a policy's pods is of those in
// namespaces where the user may get pods; it would otherwise tell a user of one namespace
// how many pods run in the others.
func TestSelectedPodsCountsOnlyVisible(t *testing.T) {
	tests := []struct {
		name    string
		user    string
		want    int32
		warning string
	}{
		{name: "a user who may get pods everywhere sees the whole count", user: "admin", want: 3},
		{name: "alice counts only hers", user: "alice", want: 1, warning: onlyVisible},
		{name: "alice and bob's user counts both", user: "alice-and-bob", want: 2, warning: onlyVisible},
		{name: "a user of no namespace counts none", user: "nobody", want: 0, warning: onlyVisible},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewREST(fixture(), authz)
			var getWarnings, listWarnings recorder
			obj, err := r.Get(asUser(tt.user, &getWarnings), "egress", &metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := obj.(*v1alpha1.EgressPolicyView).SelectedPods; got != tt.want {
				t.Errorf("get: selectedPods %d, want %d", got, tt.want)
			}
			list, err := r.List(asUser(tt.user, &listWarnings), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := list.(*v1alpha1.EgressPolicyViewList).Items[0].SelectedPods; got != tt.want {
				t.Errorf("list: selectedPods %d, want %d", got, tt.want)
			}
			for _, w := range []recorder{getWarnings, listWarnings} {
				if tt.warning == "" && len(w) > 0 || tt.warning != "" && (len(w) != 1 || w[0] != tt.warning) {
					t.Errorf("warnings %q, want %q", w, tt.warning)
				}
			}
		})
	}
}

func TestTable(t *testing.T) {
	obj, _ := NewREST(fixture(), authz).List(asUser("admin", &recorder{}), nil)
	tbl, err := NewREST(nil, nil).ConvertToTable(context.Background(), obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range tbl.Rows {
		var cells []string
		for _, c := range r.Cells[:8] {
			cells = append(cells, fmt.Sprint(c))
		}
		lines = append(lines, strings.Join(cells, " | "))
	}
	want := []string{
		"egress | 198.51.100.100 | node2 | node2 | node3 (InSync) | SNAT | 3 | 8.8.8.0/24",
		"orphan | 198.51.100.120 | <none> | <none> | <none> | Drop | 0 | <none>",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}
