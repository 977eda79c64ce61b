package podaccess

import (
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const agent = "system:serviceaccount:egressgw-system:egressgw-agent"

func TestReview(t *testing.T) {
	onNode := map[string]authorizationv1.ExtraValue{"authentication.kubernetes.io/node-name": {"node1"}}
	pods := func(verb string, fs *authorizationv1.FieldSelectorAttributes) *authorizationv1.ResourceAttributes {
		return &authorizationv1.ResourceAttributes{Verb: verb, Version: "v1", Resource: "pods", FieldSelector: fs}
	}
	in := func(key string, values ...string) *authorizationv1.FieldSelectorAttributes {
		return &authorizationv1.FieldSelectorAttributes{Requirements: []metav1.FieldSelectorRequirement{
			{Key: key, Operator: metav1.FieldSelectorOpIn, Values: values}}}
	}
	raw := func(s string) *authorizationv1.FieldSelectorAttributes {
		return &authorizationv1.FieldSelectorAttributes{RawSelector: s}
	}
	tests := []struct {
		name string
		spec authorizationv1.SubjectAccessReviewSpec
		// wantDenied is empty for no opinion, else what the reason must say.
		wantDenied string
	}{
		{name: "lists its own node's pods",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("list", in("spec.nodeName", "node1"))}},
		{name: "watches its own node's pods",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("watch", in("spec.nodeName", "node1"))}},
		{name: "its own node, narrowed further by another field",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("list",
				&authorizationv1.FieldSelectorAttributes{Requirements: []metav1.FieldSelectorRequirement{
					{Key: "status.phase", Operator: metav1.FieldSelectorOpNotIn, Values: []string{"Succeeded"}},
					{Key: "spec.nodeName", Operator: metav1.FieldSelectorOpIn, Values: []string{"node1"}}}})}},
		{name: "its own node, as a raw selector",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("list", raw("spec.nodeName==node1"))}},
		{name: "in one namespace, its own node",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: "default", Verb: "list", Resource: "pods", FieldSelector: in("spec.nodeName", "node1")}}},

		{name: "another node's pods", wantDenied: "add the field selector spec.nodeName=node1 (this request has the field selector spec.nodeName=node2)",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("list", in("spec.nodeName", "node2"))}},
		{name: "every pod", wantDenied: "may list only its own node's pods: add the field selector spec.nodeName=node1 (this request has no field selector)",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("list", nil)}},
		{name: "watching every pod", wantDenied: "may watch only its own node's pods",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("watch", nil)}},
		{name: "a set of nodes that holds its own", wantDenied: "spec.nodeName in (node1,node2)",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("list", in("spec.nodeName", "node1", "node2"))}},
		{name: "every node but another", wantDenied: "spec.nodeName!=node2",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("list", raw("spec.nodeName!=node2"))}},
		{name: "a selector on another field", wantDenied: "this request has the field selector metadata.namespace=default",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("list", in("metadata.namespace", "default"))}},
		{name: "a raw selector that does not parse", wantDenied: "does not parse",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("list", raw("spec.nodeName in (node1)"))}},
		{name: "a label selector only", wantDenied: "this request has a label selector only",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: "list", Resource: "pods", LabelSelector: &authorizationv1.LabelSelectorAttributes{RawSelector: "kubernetes.io/hostname=node1"}}}},
		{name: "a pod by name", wantDenied: "may not get pods by name: it lists and watches its node's pods with the field selector spec.nodeName=node1",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: "default", Verb: "get", Resource: "pods", Name: "web"}}},
		{name: "a token that names no node", wantDenied: "bound to its pod",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, ResourceAttributes: pods("list", in("spec.nodeName", "node1"))}},
		{name: "a token that names an empty node", wantDenied: "bound to its pod",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: map[string]authorizationv1.ExtraValue{"authentication.kubernetes.io/node-name": {""}},
				ResourceAttributes: pods("list", in("spec.nodeName", ""))}},

		{name: "another user's reads of every pod",
			spec: authorizationv1.SubjectAccessReviewSpec{User: "system:serviceaccount:egressgw-system:egressgw-controller", Extra: onNode, ResourceAttributes: pods("list", nil)}},
		{name: "the agent's reads of nodes",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "list", Resource: "nodes"}}},
		{name: "pods of another API group",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "list", Group: "metrics.k8s.io", Resource: "pods"}}},
		{name: "a pod's subresource, which RBAC does not grant",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Resource: "pods", Subresource: "log", Name: "web"}}},
		{name: "writes to pods, which RBAC does not grant",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, ResourceAttributes: pods("delete", nil)}},
		{name: "a non-resource request",
			spec: authorizationv1.SubjectAccessReviewSpec{User: agent, Extra: onNode, NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/version", Verb: "get"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Review(agent, tt.spec)
			if got.Allowed {
				t.Fatalf("allowed: the review may only deny or have no opinion (%+v)", got)
			}
			switch {
			case tt.wantDenied == "" && got.Denied:
				t.Fatalf("denied (%s), want no opinion", got.Reason)
			case tt.wantDenied != "" && !got.Denied:
				t.Fatalf("no opinion (%q), want denied with %q", got.Reason, tt.wantDenied)
			case !strings.Contains(got.Reason, tt.wantDenied):
				t.Fatalf("reason %q, want it to say %q", got.Reason, tt.wantDenied)
			}
		})
	}
}
