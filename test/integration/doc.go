// Package integration holds tests that run against a real etcd and kube-apiserver and
// drive them with kubectl, the way users do.
package integration
