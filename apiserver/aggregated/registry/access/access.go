// Package access decides whether a user may see what pods of a namespace do. Views and
// previews describe pods (their IPs, nodes and labels), so reading them needs the right to
// get those pods, on top of RBAC on the views themselves.
package access

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// Authorizer is the part of the server's authorizer this package asks: the delegated
// one, which asks kube-apiserver with a SubjectAccessReview.
type Authorizer interface {
	Authorize(ctx context.Context, a authorizer.Attributes) (authorized authorizer.Decision, reason string, err error)
}

// Pods returns nil if the requesting user may get pods in namespace ("" for every
// namespace), and otherwise a Forbidden error for the resource and name being read.
func Pods(ctx context.Context, authz Authorizer, namespace string, resource schema.GroupResource, name string) error {
	user, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return apierrors.NewForbidden(resource, name, errors.New("the request carries no user"))
	}
	decision, reason, err := authz.Authorize(ctx, authorizer.AttributesRecord{
		User: user, Verb: "get", Namespace: namespace,
		APIGroup: "", APIVersion: "v1", Resource: "pods", ResourceRequest: true,
	})
	where := fmt.Sprintf("in the namespace %q", namespace)
	if namespace == "" {
		where = "at the cluster scope"
	}
	switch {
	case decision == authorizer.DecisionAllow:
		return nil
	case err != nil:
		// As kube-apiserver's own authorization filter does: the answer is unknown, which
		// is not the user's doing.
		return apierrors.NewInternalError(fmt.Errorf("asking whether user %q may get pods %s: %w", user.GetName(), where, err))
	}
	msg := fmt.Sprintf("user %q cannot get pods %s, which this shows the egress of", user.GetName(), where)
	if reason != "" {
		msg += ": " + reason
	}
	return apierrors.NewForbidden(resource, name, errors.New(msg))
}

// Cache remembers one request's decisions per namespace, for storage that reads many.
type Cache struct {
	ctx      context.Context
	authz    Authorizer
	resource schema.GroupResource
	allowed  map[string]bool
}

// NewCache checks for the user of ctx.
func NewCache(ctx context.Context, authz Authorizer, resource schema.GroupResource) *Cache {
	return &Cache{ctx: ctx, authz: authz, resource: resource, allowed: map[string]bool{}}
}

// Allowed reports whether the user may get pods in namespace.
func (c *Cache) Allowed(namespace string) bool {
	allowed, seen := c.allowed[namespace]
	if !seen {
		allowed = Pods(c.ctx, c.authz, namespace, c.resource, "") == nil
		c.allowed[namespace] = allowed
	}
	return allowed
}
