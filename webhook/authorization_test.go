package webhook

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
)

// TestAuthorizationHandler checks the wire: what kube-apiserver posts, and what it reads
// back. The decisions themselves are podaccess's, tested there.
func TestAuthorizationHandler(t *testing.T) {
	const agentOnNode1 = `"user": "system:serviceaccount:egressgw-system:egressgw-agent",
		"extra": {"authentication.kubernetes.io/node-name": ["node1"]}`
	review := func(version, spec string) string {
		return `{"apiVersion": "authorization.k8s.io/` + version + `", "kind": "SubjectAccessReview", "spec": {` + spec + `}}`
	}
	tests := []struct {
		name       string
		method     string
		body       string
		wantCode   int
		wantStatus authorizationv1.SubjectAccessReviewStatus // with wantCode 200
		wantError  string                                    // otherwise, in the body
	}{
		{name: "the agent lists another node's pods", method: http.MethodPost, wantCode: http.StatusOK,
			body: review("v1", agentOnNode1+`, "resourceAttributes": {"verb": "list", "version": "v1", "resource": "pods",
				"fieldSelector": {"requirements": [{"key": "spec.nodeName", "operator": "In", "values": ["node2"]}]}}`),
			wantStatus: authorizationv1.SubjectAccessReviewStatus{Denied: true, Reason: "the node agent of node1 may list only its own node's pods: " +
				"add the field selector spec.nodeName=node1 (this request has the field selector spec.nodeName=node2)"}},
		{name: "the agent lists its own node's pods", method: http.MethodPost, wantCode: http.StatusOK,
			body: review("v1", agentOnNode1+`, "resourceAttributes": {"verb": "list", "version": "v1", "resource": "pods",
				"fieldSelector": {"requirements": [{"key": "spec.nodeName", "operator": "In", "values": ["node1"]}]}}`)},
		{name: "the agent in another namespace is a stranger", method: http.MethodPost, wantCode: http.StatusOK,
			body: review("v1", `"user": "system:serviceaccount:default:egressgw-agent", "resourceAttributes": {"verb": "list", "resource": "pods"}`)},
		{name: "a v1beta1 review", method: http.MethodPost, wantCode: http.StatusBadRequest, wantError: "subjectAccessReviewVersion: v1",
			body: review("v1beta1", `"user": "system:serviceaccount:egressgw-system:egressgw-agent"`)},
		{name: "not JSON", method: http.MethodPost, body: "yes please", wantCode: http.StatusBadRequest, wantError: "want an authorization.k8s.io/v1 SubjectAccessReview"},
		{name: "a GET", method: http.MethodGet, wantCode: http.StatusMethodNotAllowed, wantError: "POST a SubjectAccessReview"},
	}
	h := NewAuthorizationHandler("egressgw-system")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, AuthorizationPath, strings.NewReader(tt.body)))
			if rec.Code != tt.wantCode {
				t.Fatalf("HTTP %d (%s), want %d", rec.Code, rec.Body, tt.wantCode)
			}
			if tt.wantCode != http.StatusOK {
				if !strings.Contains(rec.Body.String(), tt.wantError) {
					t.Fatalf("body %q, want it to say %q", rec.Body, tt.wantError)
				}
				return
			}
			var got authorizationv1.SubjectAccessReview
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.APIVersion != "authorization.k8s.io/v1" || got.Kind != "SubjectAccessReview" {
				t.Errorf("answered with %s %s, want authorization.k8s.io/v1 SubjectAccessReview", got.APIVersion, got.Kind)
			}
			if got.Status != tt.wantStatus {
				t.Errorf("status %+v, want %+v", got.Status, tt.wantStatus)
			}
		})
	}
}
