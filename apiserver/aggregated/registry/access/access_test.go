package access

import (
	"context"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

type authz func(authorizer.Attributes) (authorizer.Decision, string, error)

func (f authz) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	return f(a)
}

func TestPods(t *testing.T) {
	var asked authorizer.Attributes
	allowAlice := authz(func(a authorizer.Attributes) (authorizer.Decision, string, error) {
		asked = a
		if a.GetNamespace() == "alice" {
			return authorizer.DecisionAllow, "", nil
		}
		return authorizer.DecisionNoOpinion, "RBAC: no rule", nil
	})
	failing := authz(func(authorizer.Attributes) (authorizer.Decision, string, error) {
		return authorizer.DecisionNoOpinion, "", errors.New("SubjectAccessReview timed out")
	})
	tests := []struct {
		name      string
		authz     Authorizer
		user      bool
		namespace string
		want      string // empty: allowed
		internal  bool
	}{
		{name: "allowed", authz: allowAlice, user: true, namespace: "alice"},
		{name: "denied says who, where, and why", authz: allowAlice, user: true, namespace: "bob", want: `user "u" cannot get pods in the namespace "bob", which this shows the egress of: RBAC: no rule`},
		{name: "every namespace", authz: allowAlice, user: true, want: "at the cluster scope"},
		{name: "no user", authz: allowAlice, namespace: "alice", want: "carries no user"},
		{name: "an authorizer error is the server's, not the user's", authz: failing, user: true, namespace: "alice", want: "SubjectAccessReview timed out", internal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.user {
				ctx = genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: "u"})
			}
			err := Pods(ctx, tt.authz, tt.namespace, schema.GroupResource{Group: "egress.egressgw.io", Resource: "podegresses"}, "x")
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if asked.GetVerb() != "get" || asked.GetResource() != "pods" || asked.GetAPIGroup() != "" || !asked.IsResourceRequest() {
					t.Errorf("asked %+v, want get pods", asked)
				}
				return
			}
			if apierrors.IsForbidden(err) == tt.internal || apierrors.IsInternalError(err) != tt.internal || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want 403 (500 if internal=%t) saying %q", err, tt.internal, tt.want)
			}
		})
	}
}
