// Package controlplane starts a real etcd and kube-apiserver for tests, with this project's
// CRDs installed and its conversion webhook served, and runs kubectl against them. The
// binaries come from hack/controlplane.sh, which builds them from the Go module proxy.
//
// It never fakes the API server, and it never skips: a test that asks for a control plane
// either gets one or fails.
package controlplane
