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
				Destinations: []string{"8.8.8.0/24"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "orphan"}, EgressIP: "198.51.100.120", Verdict: v1alpha1.VerdictDrop},
		},
		pods: map[string][]v1alpha1.PodEgress{"egress": {pod("alice"), pod("bob"), pod("paul")}},
	}
}

func TestGetAndList(t *testing.T) {
	r := NewREST(fixture())
	if _, err := r.Get(context.Background(), "nope", &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
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
			obj, err := r.List(context.Background(), tt.opts)
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
		{name: "alice sees her own, and is told of the rest", user: "alice", want: []string{"alice"}, warning: "2 pods left out: you may not get pods in the namespaces bob, paul"},
	}
	authz := fakeAuthz{"admin": {"alice", "bob", "paul"}, "alice": {"alice"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warnings recorder
			ctx := warning.WithWarningRecorder(genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: tt.user}), &warnings)
			obj, err := NewPodsREST(fixture(), authz).Get(ctx, "egress", &metav1.GetOptions{})
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

func TestTable(t *testing.T) {
	obj, _ := NewREST(fixture()).List(context.Background(), nil)
	tbl, err := NewREST(nil).ConvertToTable(context.Background(), obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range tbl.Rows {
		var cells []string
		for _, c := range r.Cells[:7] {
			cells = append(cells, fmt.Sprint(c))
		}
		lines = append(lines, strings.Join(cells, " | "))
	}
	want := []string{
		"egress | 198.51.100.100 | node2 | node2 | SNAT | 3 | 8.8.8.0/24",
		"orphan | 198.51.100.120 | <none> | <none> | Drop | 0 | <none>",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}
