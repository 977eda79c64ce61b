package podaccess

import (
	"fmt"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
)

// NodeField is the field a node agent's pod lists and watches must select on.
const NodeField = "spec.nodeName"

// Review answers a SubjectAccessReview for agent, the node agent's user name
// (system:serviceaccount:<namespace>:<name>). It denies the agent's reads of pods that
// are not limited to its own node, and has no opinion on anything else.
//
// The agent may not get a pod by name at all: it never does (its informer lists and
// watches), and telling whether a named pod is on its node would take a cache of every
// pod in the cluster, which is what kube-apiserver's Node authorizer keeps for kubelets.
func Review(agent string, spec authorizationv1.SubjectAccessReviewSpec) authorizationv1.SubjectAccessReviewStatus {
	var noOpinion authorizationv1.SubjectAccessReviewStatus
	ra := spec.ResourceAttributes
	if spec.User != agent || ra == nil || ra.Group != "" || ra.Resource != "pods" || ra.Subresource != "" {
		return noOpinion
	}
	if !slices.Contains([]string{"get", "list", "watch"}, ra.Verb) {
		return noOpinion // RBAC grants the agent no other verb on pods
	}
	node := nodeName(spec.Extra)
	switch {
	case node == "":
		return deny("the node agent reads pods only with a ServiceAccount token bound to its pod, which names its node " +
			"(user extra " + serviceaccount.NodeNameKey + "); run it with the token kubelet mounts into its pod, " +
			"or request one with kubectl create token --bound-object-kind=Pod")
	case ra.Verb == "get":
		return deny(fmt.Sprintf("the node agent of %s may not get pods by name: it lists and watches its node's pods "+
			"with the field selector %s=%s", node, NodeField, node))
	case !selectsOnly(ra.FieldSelector, node):
		return deny(fmt.Sprintf("the node agent of %s may %s only its own node's pods: add the field selector %s=%s (this request has %s)",
			node, ra.Verb, NodeField, node, describe(ra)))
	}
	return noOpinion
}

func deny(reason string) authorizationv1.SubjectAccessReviewStatus {
	return authorizationv1.SubjectAccessReviewStatus{Denied: true, Reason: reason}
}

// nodeName is the node a pod-bound ServiceAccount token names, or "" if it names none
// or, impossibly, several.
func nodeName(extra map[string]authorizationv1.ExtraValue) string {
	if v := extra[serviceaccount.NodeNameKey]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// selectsOnly says whether the field selector keeps only pods on node: one of its
// requirements (which are ANDed) is spec.nodeName equal to node. A set of several nodes,
// a "!=", or a selector that does not parse does not count.
func selectsOnly(fs *authorizationv1.FieldSelectorAttributes, node string) bool {
	for _, r := range requirements(fs) {
		if r.Key == NodeField && r.Operator == metav1.FieldSelectorOpIn && len(r.Values) == 1 && r.Values[0] == node {
			return true
		}
	}
	return false
}

// requirements are the selector's requirements, parsed from rawSelector if that is what
// it holds. kube-apiserver sends requirements; other clients of the SubjectAccessReview
// API may send either.
func requirements(fs *authorizationv1.FieldSelectorAttributes) []metav1.FieldSelectorRequirement {
	if fs == nil {
		return nil
	}
	if fs.RawSelector == "" {
		return fs.Requirements
	}
	sel, err := fields.ParseSelector(fs.RawSelector)
	if err != nil {
		return nil
	}
	var out []metav1.FieldSelectorRequirement
	for _, r := range sel.Requirements() {
		op := metav1.FieldSelectorOpNotIn
		if r.Operator == selection.Equals || r.Operator == selection.DoubleEquals {
			op = metav1.FieldSelectorOpIn
		}
		out = append(out, metav1.FieldSelectorRequirement{Key: r.Field, Operator: op, Values: []string{r.Value}})
	}
	return out
}

// describe says what a request selected, for a denial.
func describe(ra *authorizationv1.ResourceAttributes) string {
	reqs := requirements(ra.FieldSelector)
	switch {
	case len(reqs) > 0:
		var terms []string
		for _, r := range reqs {
			terms = append(terms, term(r))
		}
		return "the field selector " + strings.Join(terms, ",")
	case ra.FieldSelector != nil && ra.FieldSelector.RawSelector != "":
		return fmt.Sprintf("the field selector %q, which does not parse", ra.FieldSelector.RawSelector)
	case ra.LabelSelector != nil:
		return "a label selector only"
	}
	return "no field selector"
}

// term writes a requirement as a field selector would: key=value where it can.
func term(r metav1.FieldSelectorRequirement) string {
	switch {
	case r.Operator == metav1.FieldSelectorOpIn && len(r.Values) == 1:
		return r.Key + "=" + r.Values[0]
	case r.Operator == metav1.FieldSelectorOpNotIn && len(r.Values) == 1:
		return r.Key + "!=" + r.Values[0]
	case len(r.Values) > 0:
		return fmt.Sprintf("%s %s (%s)", r.Key, strings.ToLower(string(r.Operator)), strings.Join(r.Values, ","))
	}
	return fmt.Sprintf("%s %s", r.Key, strings.ToLower(string(r.Operator)))
}
