// Package aggregated tests the egress.egressgw.io aggregated API server through a real
// kube-apiserver's aggregation layer, with kubectl, the way users reach it. The server
// runs in the test process and listens inside a network namespace (package topology):
// kube-apiserver does not proxy to loopback endpoints. The tests need root.
package aggregated
