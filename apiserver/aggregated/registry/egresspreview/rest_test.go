package egresspreview

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/egressgw/egressgw/apiserver/aggregated/preview"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// fakeInputs knows alice/frontend (198.18.1.10) and bob/frontend (198.18.3.10), both
// role=frontend, and the spec's policy for alice, held by node2.
type fakeInputs struct{ calls int }

func (f *fakeInputs) PreviewInput(namespace, name string, ip, _ netip.Addr) (preview.Input, error) {
	f.calls++
	pods := map[string]*corev1.Pod{
		"alice/frontend": {ObjectMeta: metav1.ObjectMeta{Namespace: "alice", Name: "frontend", Labels: map[string]string{"role": "frontend"}},
			Spec: corev1.PodSpec{NodeName: "node1"}, Status: corev1.PodStatus{PodIP: "198.18.1.10"}},
		"bob/frontend": {ObjectMeta: metav1.ObjectMeta{Namespace: "bob", Name: "frontend", Labels: map[string]string{"role": "frontend"}},
			Spec: corev1.PodSpec{NodeName: "node3"}, Status: corev1.PodStatus{PodIP: "198.18.3.10"}},
	}
	var pod *corev1.Pod
	for key, p := range pods {
		if key == namespace+"/"+name || (name == "" && p.Status.PodIP == ip.String()) {
			pod = p
		}
	}
	if pod == nil {
		return preview.Input{}, apierrors.NewNotFound(corev1.Resource("pods"), name)
	}
	policy := &v1.EgressNATPolicy{ObjectMeta: metav1.ObjectMeta{Name: "egress"}, Spec: v1.EgressNATPolicySpec{
		Sources:      []v1.EgressSource{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"user": "alice"}}, PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}}}},
		Destinations: []v1.Destination{{CIDR: "8.8.8.0/24"}}, GatewayRef: &v1.GatewayReference{Namespace: "kube-system", Name: "default"},
	}}
	ps := routing.Compile([]*v1.EgressNATPolicy{policy}, func(*v1.EgressNATPolicy) routing.Resolution {
		return routing.Resolution{EgressIP: "198.51.100.100", Node: "node2", Reason: routing.ReasonReady}
	})
	return preview.Input{
		Pod: pod, NamespaceLabels: map[string]string{"user": pod.Namespace}, NodeIP: netip.MustParseAddr("198.51.100.11"),
		Policies: ps, Cluster: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")},
		HeldBy: map[string][]string{"198.51.100.100": {"node2"}},
	}, nil
}

// fakeAuthz lets alice get pods in alice only.
type fakeAuthz struct{}

func (fakeAuthz) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if a.GetUser().GetName() == "alice" && a.GetNamespace() == "alice" && a.GetVerb() == "get" && a.GetResource() == "pods" {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func ctxFor(userName, namespace string) context.Context {
	return genericapirequest.WithNamespace(genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: userName}), namespace)
}

func previewOf(source v1alpha1.PreviewSource, dst string, protocol v1alpha1.Protocol, port int32) *v1alpha1.EgressPreview {
	return &v1alpha1.EgressPreview{Spec: v1alpha1.EgressPreviewSpec{Source: source, Destination: dst, Protocol: protocol, Port: port}}
}

func TestCreate(t *testing.T) {
	alice := v1alpha1.PreviewSource{Namespace: "alice", Name: "frontend"}
	tests := []struct {
		name     string
		preview  *v1alpha1.EgressPreview
		want     v1alpha1.Verdict
		sourceIP string
		err      func(error) bool
		// fields are the field paths a 422 must name.
		fields []string
	}{
		{name: "spec: the frontend to 8.8.8.8 leaves with the egress IP", preview: previewOf(alice, "8.8.8.8", "TCP", 443),
			want: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.100"},
		{name: "by pod IP, protocol defaulted", preview: previewOf(v1alpha1.PreviewSource{IP: "198.18.1.10"}, "8.8.8.8", "", 0),
			want: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.100"},
		{name: "spec: to 1.1.1.1, the node's IP", preview: previewOf(alice, "1.1.1.1", "UDP", 53),
			want: v1alpha1.VerdictMasquerade, sourceIP: "198.51.100.11"},
		{name: "ICMP", preview: previewOf(alice, "8.8.8.8", "ICMP", 0), want: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.100"},
		{name: "an unknown pod is 404", preview: previewOf(v1alpha1.PreviewSource{Namespace: "alice", Name: "nope"}, "8.8.8.8", "", 0), err: apierrors.IsNotFound},
		{name: "an unknown pod IP is 404", preview: previewOf(v1alpha1.PreviewSource{IP: "198.18.9.9"}, "8.8.8.8", "", 0), err: apierrors.IsNotFound},
		{name: "another namespace's pod is 403", preview: previewOf(v1alpha1.PreviewSource{Namespace: "bob", Name: "frontend"}, "8.8.8.8", "", 0), err: apierrors.IsForbidden},
		{name: "another namespace's pod by IP is 404, as if no pod had it", preview: previewOf(v1alpha1.PreviewSource{IP: "198.18.3.10"}, "8.8.8.8", "", 0),
			err: func(err error) bool {
				return apierrors.IsNotFound(err) && err.Error() == noPodWithIP(netip.MustParseAddr("198.18.3.10")).Error()
			}},
		{name: "no source", preview: previewOf(v1alpha1.PreviewSource{}, "8.8.8.8", "", 0), err: apierrors.IsInvalid, fields: []string{"spec.source"}},
		{name: "a name without a namespace", preview: previewOf(v1alpha1.PreviewSource{Name: "frontend"}, "8.8.8.8", "", 0), err: apierrors.IsInvalid, fields: []string{"spec.source.namespace"}},
		{name: "both a name and an IP", preview: previewOf(v1alpha1.PreviewSource{Namespace: "alice", Name: "frontend", IP: "198.18.1.10"}, "8.8.8.8", "", 0), err: apierrors.IsInvalid, fields: []string{"spec.source.ip"}},
		{name: "a bad source IP", preview: previewOf(v1alpha1.PreviewSource{IP: "pod-a"}, "8.8.8.8", "", 0), err: apierrors.IsInvalid, fields: []string{"spec.source.ip"}},
		{name: "no destination", preview: previewOf(alice, "", "", 0), err: apierrors.IsInvalid, fields: []string{"spec.destination"}},
		{name: "an IPv6 destination", preview: previewOf(alice, "2001:db8::1", "", 0), err: apierrors.IsInvalid, fields: []string{"spec.destination"}},
		{name: "an unknown protocol and a bad port", preview: previewOf(alice, "8.8.8.8", "GRE", 70000), err: apierrors.IsInvalid, fields: []string{"spec.protocol", "spec.port"}},
		{name: "a port on ICMP", preview: previewOf(alice, "8.8.8.8", "ICMP", 7), err: apierrors.IsInvalid, fields: []string{"spec.port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := NewREST(&fakeInputs{}, fakeAuthz{}).Create(ctxFor("alice", ""), tt.preview, nil, &metav1.CreateOptions{})
			if tt.err != nil {
				if !tt.err(err) {
					t.Fatalf("err = %v", err)
				}
				for _, f := range tt.fields {
					if !hasCause(err, f) {
						t.Errorf("the error %v does not name %s", err, f)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := obj.(*v1alpha1.EgressPreview)
			if got.Status.Verdict != tt.want || got.Status.SourceIP != tt.sourceIP {
				t.Errorf("verdict %s from %s, want %s from %s; steps %+v", got.Status.Verdict, got.Status.SourceIP, tt.want, tt.sourceIP, got.Status.Steps)
			}
			if got.Spec != tt.preview.Spec {
				t.Errorf("the spec came back changed: %+v", got.Spec)
			}
		})
	}
}

func hasCause(err error, field string) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		return false
	}
	for _, c := range status.Status().Details.Causes {
		if c.Field == field {
			return true
		}
	}
	return false
}

// TestForbiddenBeforeLookup: a user who may not see a namespace cannot learn which of its
// pods exist.
func TestForbiddenBeforeLookup(t *testing.T) {
	inputs := &fakeInputs{}
	_, err := NewREST(inputs, fakeAuthz{}).Create(ctxFor("alice", ""), previewOf(v1alpha1.PreviewSource{Namespace: "bob", Name: "nope"}, "8.8.8.8", "", 0), nil, &metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || inputs.calls != 0 {
		t.Errorf("err = %v after %d lookups, want 403 before any", err, inputs.calls)
	}
}

func TestCreateValidationRuns(t *testing.T) {
	refuse := func(context.Context, runtime.Object) error {
		return apierrors.NewForbidden(resource, "", errors.New("admission says no"))
	}
	_, err := NewREST(&fakeInputs{}, fakeAuthz{}).Create(ctxFor("alice", ""),
		previewOf(v1alpha1.PreviewSource{Namespace: "alice", Name: "frontend"}, "8.8.8.8", "", 0), refuse, &metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("err = %v, want admission's refusal", err)
	}
}

func TestPodSubresource(t *testing.T) {
	r := NewPodREST(&fakeInputs{}, fakeAuthz{})
	if opts, _, _ := r.NewGetOptions(); opts == nil {
		t.Fatal("no options type")
	}
	tests := []struct {
		name      string
		namespace string
		pod       string
		opts      v1alpha1.PreviewOptions
		want      v1alpha1.Verdict
		err       func(error) bool
		says      string
	}{
		{name: "spec example", namespace: "alice", pod: "frontend", opts: v1alpha1.PreviewOptions{Destination: "8.8.8.8", Protocol: "TCP", Port: 443}, want: v1alpha1.VerdictSNAT},
		{name: "no destination is 400 naming the parameter", namespace: "alice", pod: "frontend", err: apierrors.IsBadRequest, says: "destination: Required value"},
		{name: "a bad protocol is 400", namespace: "alice", pod: "frontend", opts: v1alpha1.PreviewOptions{Destination: "8.8.8.8", Protocol: "tcp"}, err: apierrors.IsBadRequest, says: "protocol: Unsupported value"},
		{name: "an unknown pod is 404", namespace: "alice", pod: "nope", opts: v1alpha1.PreviewOptions{Destination: "8.8.8.8"}, err: apierrors.IsNotFound},
		{name: "another namespace is 403", namespace: "bob", pod: "frontend", opts: v1alpha1.PreviewOptions{Destination: "8.8.8.8"}, err: apierrors.IsForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := r.Get(ctxFor("alice", tt.namespace), tt.pod, &tt.opts)
			if tt.err != nil {
				if !tt.err(err) || !strings.Contains(err.Error(), tt.says) {
					t.Fatalf("err = %v, want one that says %q", err, tt.says)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := obj.(*v1alpha1.EgressPreview)
			if got.Status.Verdict != tt.want || got.Spec.Source.Namespace != tt.namespace || got.Spec.Source.Name != tt.pod {
				t.Errorf("got %+v", got)
			}
		})
	}
}
