// Package podaccess decides which pods a node agent may read, for kube-apiserver's
// authorization webhook: only its own node's, listed or watched with the field selector
// spec.nodeName=<its node>, the node its pod-bound ServiceAccount token names. RBAC
// cannot say "its own node"; this is the Node authorizer's rule for kubelets, applied to
// the agent.
//
// It must never allow anything: it denies, or has no opinion and lets RBAC decide, so it
// can only narrow what the agent's ClusterRole grants.
package podaccess
