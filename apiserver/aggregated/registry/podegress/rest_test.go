package podegress

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/egressgw/egressgw/apiserver/aggregated/registry/watchlimit"
	"github.com/egressgw/egressgw/apiserver/aggregated/view"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

// fakeViews holds views by namespace/name and records the last watch's options.
type fakeViews struct {
	items     []v1alpha1.PodEgress
	err       error
	watchOpts view.WatchOptions
}

func (f *fakeViews) PodEgress(namespace, name string) (*v1alpha1.PodEgress, error) {
	if f.err != nil {
		return nil, f.err
	}
	for i := range f.items {
		if f.items[i].Namespace == namespace && f.items[i].Name == name {
			return &f.items[i], nil
		}
	}
	return nil, apierrors.NewNotFound(resource, name)
}

func (f *fakeViews) PodEgresses(namespace string, match view.Matcher) (*v1alpha1.PodEgressList, error) {
	list := &v1alpha1.PodEgressList{}
	for _, v := range f.items {
		if (namespace == "" || v.Namespace == namespace) && (match == nil || match(&v)) {
			list.Items = append(list.Items, v)
		}
	}
	return list, f.err
}

func (f *fakeViews) WatchPodEgresses(_ string, opts view.WatchOptions, _ view.Matcher) (watch.Interface, error) {
	f.watchOpts = opts
	return watch.NewEmptyWatch(), f.err
}

// fakeAuthz lets each user get pods in the namespaces listed for it ("" for all).
type fakeAuthz map[string][]string

func (f fakeAuthz) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if a.GetVerb() != "get" || a.GetResource() != "pods" || a.GetAPIGroup() != "" {
		return authorizer.DecisionNoOpinion, "only get pods is asked", nil
	}
	for _, ns := range f[a.GetUser().GetName()] {
		if ns == "" || ns == a.GetNamespace() {
			return authorizer.DecisionAllow, "", nil
		}
	}
	return authorizer.DecisionNoOpinion, "no RBAC rule", nil
}

func specView(namespace, name, node string, labels map[string]string) v1alpha1.PodEgress {
	return v1alpha1.PodEgress{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels,
			CreationTimestamp: metav1.NewTime(time.Now().Add(-90*time.Second - 500*time.Millisecond))},
		Pod: v1alpha1.PodInfo{IP: "198.18.1.10", NodeName: node, NodeIP: "198.51.100.11"},
		Policies: []v1alpha1.SelectingPolicy{{Name: "egress", Destinations: []string{"8.8.8.0/24"},
			EgressIP: "198.51.100.100", GatewayNode: "node2", Verdict: v1alpha1.VerdictSNAT, Reason: "Ready"}},
		Routes: []v1alpha1.Route{{Destination: "8.8.8.0/24", Verdict: v1alpha1.VerdictSNAT, Policy: "egress",
			EgressIP: "198.51.100.100", GatewayNode: "node2"}},
		OtherTraffic: v1alpha1.OtherTraffic{Verdict: v1alpha1.VerdictMasquerade, NodeName: node, NodeIP: "198.51.100.11"},
	}
}

func fixture() *fakeViews {
	return &fakeViews{items: []v1alpha1.PodEgress{
		specView("alice", "frontend", "node1", map[string]string{"role": "frontend"}),
		specView("alice", "backend", "node3", map[string]string{"role": "backend"}),
		specView("bob", "frontend", "node1", map[string]string{"role": "frontend"}),
	}}
}

func ctxFor(userName, namespace string) context.Context {
	ctx := genericapirequest.WithNamespace(context.Background(), namespace)
	if userName == "" {
		return ctx
	}
	return genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: userName})
}

var authz = fakeAuthz{"alice": {"alice"}, "admin": {""}}

func TestGet(t *testing.T) {
	tests := []struct {
		name, user, namespace, pod string
		err                        error
		want                       func(error) bool
	}{
		{name: "a user who may get the namespace's pods sees the view", user: "alice", namespace: "alice", pod: "frontend"},
		{name: "an unknown pod is 404", user: "alice", namespace: "alice", pod: "nope", want: apierrors.IsNotFound},
		{name: "a user who may not get the namespace's pods is 403", user: "alice", namespace: "bob", pod: "frontend", want: apierrors.IsForbidden},
		{name: "no user is 403", namespace: "alice", pod: "frontend", want: apierrors.IsForbidden},
		{name: "views not ready: 503 passes through", user: "alice", namespace: "alice", pod: "frontend",
			err: apierrors.NewServiceUnavailable("syncing"), want: apierrors.IsServiceUnavailable},
		{name: "anything else is 500, never a user's fault", user: "alice", namespace: "alice", pod: "frontend",
			err: errors.New("boom"), want: apierrors.IsInternalError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			views := fixture()
			views.err = tt.err
			obj, err := NewREST(views, authz, watchlimit.New(watchlimit.DefaultPerUser)).Get(ctxFor(tt.user, tt.namespace), tt.pod, &metav1.GetOptions{})
			if tt.want != nil {
				if !tt.want(err) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v := obj.(*v1alpha1.PodEgress); v.Namespace != tt.namespace || v.Name != tt.pod {
				t.Errorf("got %s/%s", v.Namespace, v.Name)
			}
		})
	}
}

func TestForbiddenSaysWhy(t *testing.T) {
	_, err := NewREST(fixture(), authz, watchlimit.New(watchlimit.DefaultPerUser)).Get(ctxFor("alice", "bob"), "frontend", &metav1.GetOptions{})
	if msg := err.Error(); !strings.Contains(msg, `user "alice" cannot get pods in the namespace "bob"`) {
		t.Errorf("error %q does not say which right is missing", msg)
	}
}

func TestList(t *testing.T) {
	tests := []struct {
		name, user, namespace string
		opts                  *metainternalversion.ListOptions
		want                  []string
		wantErr               func(error) bool
	}{
		{name: "a namespace", user: "alice", namespace: "alice", want: []string{"alice/frontend", "alice/backend"}},
		{name: "label selector on the pod's labels", user: "alice", namespace: "alice",
			opts: &metainternalversion.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{"role": "frontend"})},
			want: []string{"alice/frontend"}},
		{name: "field selector on the pod's node", user: "admin",
			opts: &metainternalversion.ListOptions{FieldSelector: fields.OneTermEqualSelector("pod.nodeName", "node1")},
			want: []string{"alice/frontend", "bob/frontend"}},
		{name: "every namespace needs pods at the cluster scope", user: "alice", wantErr: apierrors.IsForbidden},
		{name: "a namespace the user may not read", user: "alice", namespace: "bob", wantErr: apierrors.IsForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := NewREST(fixture(), authz, watchlimit.New(watchlimit.DefaultPerUser)).List(ctxFor(tt.user, tt.namespace), tt.opts)
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range obj.(*v1alpha1.PodEgressList).Items {
				got = append(got, v.Namespace+"/"+v.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestWatchPassesWhereToStart(t *testing.T) {
	views := fixture()
	r := NewREST(views, authz, watchlimit.New(watchlimit.DefaultPerUser))
	yes := true
	w, err := r.Watch(ctxFor("alice", "alice"), &metainternalversion.ListOptions{ResourceVersion: "42", AllowWatchBookmarks: true, SendInitialEvents: &yes})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	if diff := cmp.Diff(view.WatchOptions{ResourceVersion: "42", SendInitialEvents: true, Bookmarks: true}, views.watchOpts); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := r.Watch(ctxFor("alice", "bob"), &metainternalversion.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("watching another namespace: err = %v, want 403", err)
	}
}

// TestWatchesAreBoundedPerUser: past the limit a user's watch is refused with 429 before
// the Store copies anything; a refused or forbidden watch takes no slot, and other users
// are not affected.
func TestWatchesAreBoundedPerUser(t *testing.T) {
	r := NewREST(fixture(), authz, watchlimit.New(2))
	tests := []struct {
		name, user, namespace string
		want                  func(error) bool
	}{
		{name: "alice's first", user: "alice", namespace: "alice"},
		{name: "alice's second", user: "alice", namespace: "alice"},
		{name: "alice's third is one too many", user: "alice", namespace: "alice", want: apierrors.IsTooManyRequests},
		{name: "a forbidden watch is 403, not 429", user: "alice", namespace: "bob", want: apierrors.IsForbidden},
		{name: "another user still may", user: "admin", namespace: "bob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Watch(ctxFor(tt.user, tt.namespace), &metainternalversion.ListOptions{})
			switch {
			case tt.want == nil && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != nil && !tt.want(err):
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestTable(t *testing.T) {
	v := specView("alice", "frontend", "node1", nil)
	dropped := specView("alice", "db", "node1", nil)
	dropped.Policies[0].GatewayNode, dropped.Routes[0].Verdict = "", v1alpha1.VerdictDrop
	none := specView("alice", "plain", "node1", nil)
	none.Policies, none.Routes = nil, nil
	none.CreationTimestamp = metav1.Time{}

	tbl, err := TableConvertor{}.ConvertToTable(context.Background(), &v1alpha1.PodEgressList{
		ListMeta: metav1.ListMeta{ResourceVersion: "7"}, Items: []v1alpha1.PodEgress{v, dropped, none}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var header []string
	for _, c := range tbl.ColumnDefinitions {
		if c.Priority == 0 {
			header = append(header, strings.ToUpper(c.Name))
		}
	}
	if diff := cmp.Diff([]string{"POD", "POLICY", "EGRESS IP", "GATEWAY NODE", "DESTINATIONS", "OTHER TRAFFIC", "AGE"}, header); diff != "" {
		t.Errorf("columns (-want +got):\n%s", diff)
	}
	want := [][]any{
		{"frontend", "egress", "198.51.100.100", "node2", "8.8.8.0/24", "masquerade to node1 (198.51.100.11)", "90s"},
		{"db", "egress", "198.51.100.100", "<none>", "8.8.8.0/24 (drop)", "masquerade to node1 (198.51.100.11)", "90s"},
		{"plain", "<none>", "<none>", "<none>", "<none>", "masquerade to node1 (198.51.100.11)", "<unknown>"},
	}
	for i, row := range tbl.Rows {
		if diff := cmp.Diff(want[i], row.Cells[:7]); diff != "" {
			t.Errorf("row %d (-want +got):\n%s", i, diff)
		}
	}
	if tbl.ResourceVersion != "7" {
		t.Errorf("table resourceVersion %q, want the list's", tbl.ResourceVersion)
	}
	if _, err := (TableConvertor{}).ConvertToTable(context.Background(), &v1alpha1.EgressPreview{}, nil); err == nil {
		t.Error("printing another kind did not fail")
	}
}
