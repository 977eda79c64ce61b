package metricsauth

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/options"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Filter is a metricsserver.Options FilterProvider: it lets through only requests that
// kube-apiserver authenticates and authorizes.
func Filter(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	authn, err := authenticationv1.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	authz, err := authorizationv1.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	tokens, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                nil, // no anonymous requests
		CacheTTL:                 time.Minute,
		TokenAccessReviewClient:  authn,
		TokenAccessReviewTimeout: 10 * time.Second,
		WebhookRetryBackoff:      options.DefaultAuthWebhookRetryBackoff(),
	}.New()
	if err != nil {
		return nil, fmt.Errorf("delegating authentication for /metrics: %w", err)
	}
	access, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: authz,
		AllowCacheTTL:             5 * time.Minute,
		DenyCacheTTL:              30 * time.Second,
		WebhookRetryBackoff:       options.DefaultAuthWebhookRetryBackoff(),
	}.New()
	if err != nil {
		return nil, fmt.Errorf("delegating authorization for /metrics: %w", err)
	}
	return newFilter(tokens, access), nil
}

// newFilter is the filter over an authenticator and an authorizer.
func newFilter(tokens authenticator.Request, access authorizer.UnconditionalAuthorizer) metricsserver.Filter {
	return func(log logr.Logger, handler http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			// A token kube-apiserver does not know comes back as an error of the review,
			// as an unreachable kube-apiserver does: either way the client is not
			// authenticated, and the log says which.
			res, ok, err := tokens.AuthenticateRequest(req)
			if err != nil || !ok {
				log.V(2).Info("Refused /metrics to an unauthenticated request", "remote", req.RemoteAddr, "err", err)
				http.Error(w, "Unauthorized: authenticate with the bearer token of an account that may get /metrics (ClusterRole egressgw-metrics-reader)", http.StatusUnauthorized)
				return
			}
			attrs := authorizer.AttributesRecord{User: res.User, Verb: strings.ToLower(req.Method), Path: req.URL.Path}
			decision, reason, err := access.Authorize(req.Context(), attrs)
			switch {
			case err != nil:
				log.Error(err, "Checking access to /metrics", "user", res.User.GetName())
				http.Error(w, "Service Unavailable: kube-apiserver could not check the access of "+res.User.GetName()+"; retry", http.StatusServiceUnavailable)
				return
			case decision != authorizer.DecisionAllow:
				log.V(2).Info("Refused /metrics to an account without access", "user", res.User.GetName(), "reason", reason)
				http.Error(w, "Forbidden: "+res.User.GetName()+" may not get "+req.URL.Path+"; bind it to the ClusterRole egressgw-metrics-reader", http.StatusForbidden)
				return
			}
			handler.ServeHTTP(w, req)
		}), nil
	}
}
