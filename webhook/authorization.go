package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/webhook/podaccess"
)

// AuthorizationPath is where kube-apiserver sends the SubjectAccessReviews of
// artifacts/webhook/authorization-config.yaml: the node agent's reads of pods.
const AuthorizationPath = "/authorize-agent-pods"

// AgentServiceAccount is the node agent's ServiceAccount, in the webhook's namespace
// (artifacts/nodeagent/rbac.yaml).
const AgentServiceAccount = "egressgw-agent"

// maxReviewBytes bounds a SubjectAccessReview: a user's groups and extra, a few KiB.
const maxReviewBytes = 1 << 20

// authorizationHandler is a thin adapter over podaccess.Review: it decodes a
// SubjectAccessReview, and answers with its status. A request it cannot read gets a 400,
// which kube-apiserver counts as a failure (failurePolicy: Deny for the agent's reads).
type authorizationHandler struct {
	agent string // the agent's user name
}

var _ http.Handler = &authorizationHandler{}

// NewAuthorizationHandler returns the handler for AuthorizationPath, judging the agent's
// ServiceAccount in namespace.
func NewAuthorizationHandler(namespace string) http.Handler {
	return &authorizationHandler{agent: serviceaccount.MakeUsername(namespace, AgentServiceAccount)}
}

func (h *authorizationHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a SubjectAccessReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		http.Error(w, fmt.Sprintf("reading the request: %v", err), http.StatusBadRequest)
		return
	}
	var review authorizationv1.SubjectAccessReview
	if err := json.Unmarshal(body, &review); err != nil {
		http.Error(w, fmt.Sprintf("want an authorization.k8s.io/v1 SubjectAccessReview: %v", err), http.StatusBadRequest)
		return
	}
	if gvk := review.GroupVersionKind(); gvk != authorizationv1.SchemeGroupVersion.WithKind("SubjectAccessReview") {
		http.Error(w, fmt.Sprintf("want an authorization.k8s.io/v1 SubjectAccessReview (subjectAccessReviewVersion: v1), got %q", gvk), http.StatusBadRequest)
		return
	}
	status := podaccess.Review(h.agent, review.Spec)
	if status.Denied {
		// The agent itself never asks for more; a denial is a misconfiguration or an attack.
		klog.InfoS("Denied a node agent's read of pods", "user", review.Spec.User, "reason", status.Reason)
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(&authorizationv1.SubjectAccessReview{
		TypeMeta: review.TypeMeta,
		Status:   status,
	}); err != nil {
		klog.ErrorS(err, "Writing a SubjectAccessReview response")
	}
}
