// Package metricsauth decides who may read a component's /metrics: a client whose bearer
// token kube-apiserver vouches for (TokenReview) and that may get /metrics
// (SubjectAccessReview), as kube-rbac-proxy decides. The webhook, the controller and the
// node agent serve their metrics behind it, through controller-runtime's metrics server.
//
// It must never serve metrics to a request it could not authenticate, nor answer a bad
// token with a 500: a client that is refused learns it is, and why, and nothing else.
package metricsauth
