package metricsauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// tokens knows two tokens; "broken" fails as a review does when kube-apiserver says
// nothing of a token it never issued.
type tokens map[string]string

func (t tokens) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	token, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if token == "broken" {
		return nil, false, errors.New("[invalid bearer token, square/go-jose: compact JWS format must have three parts]")
	}
	name, ok := t[token]
	if !ok {
		return nil, false, nil
	}
	return &authenticator.Response{User: &user.DefaultInfo{Name: name}}, true, nil
}

// access lets prometheus get /metrics; checking "flaky" fails.
type access struct{}

func (access) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	switch {
	case a.GetUser().GetName() == "flaky":
		return authorizer.DecisionNoOpinion, "", errors.New("connection refused")
	case a.GetUser().GetName() == "prometheus" && a.GetVerb() == "get" && a.GetPath() == "/metrics":
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "no RBAC rule", nil
}

func TestFilter(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("egressgw_up 1\n")) })
	h, err := newFilter(tokens{"good": "prometheus", "other": "someone", "unsure": "flaky"}, access{})(logr.Discard(), metrics)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token string
		want        int
		says        string
	}{
		{name: "an account that may get /metrics", token: "good", want: http.StatusOK, says: "egressgw_up"},
		{name: "no token", want: http.StatusUnauthorized, says: "egressgw-metrics-reader"},
		{name: "a token kube-apiserver does not know", token: "made-up", want: http.StatusUnauthorized},
		{name: "a token the review fails on is refused, not a 500", token: "broken", want: http.StatusUnauthorized},
		{name: "an account without access", token: "other", want: http.StatusForbidden, says: "someone may not get /metrics"},
		{name: "access that cannot be checked", token: "unsure", want: http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body := rec.Body.String()
			if rec.Code != tc.want || !strings.Contains(body, tc.says) {
				t.Errorf("%d %q, want %d saying %q", rec.Code, body, tc.want, tc.says)
			}
			if tc.want != http.StatusOK && strings.Contains(body, "egressgw_up") {
				t.Error("the metrics went to a refused request")
			}
		})
	}
}
