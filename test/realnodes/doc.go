// Package realnodes runs real Kubernetes nodes on this machine, one a network namespace
// of test/topology: containerd (Debian's, with its CRI plugin), a kubelet and kube-proxy
// (nftables mode) built from the Go module proxy by hack/nodes.sh, and the ptp, host-local
// and loopback CNI plugins of Debian's containernetworking-plugins, with the node's pod
// subnet of the topology's address plan. The kubelets register their own Nodes with a
// kube-apiserver of test/controlplane, reached through a proxy in the control-plane
// namespace.
//
// It never stands in for a node component: a node either runs the real ones or Start
// fails. It must never change the host's global kernel settings: the kubelet, which sets
// panic and overcommit sysctls at start, reads the values it wants from files bound over
// them in a mount namespace of its own.
package realnodes
