package realnodes

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// kubeletConfig is the node's KubeletConfiguration. On this machine's cgroup v1
// hierarchy (no systemd): the cgroupfs driver, which the kubelet keeps with containerd
// 1.6 (its CRI has no RuntimeConfig, so the kubelet falls back to its configuration), and
// failCgroupV1 false. Every node has its own cgroup root, so that two kubelets on one
// host never share a kubepods tree. Only clients with a certificate of the control
// plane's client CA may call it (kube-apiserver and the administrator).
func kubeletConfig(n *Node, clientCA string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: %[1]s
containerRuntimeEndpoint: unix://%[2]s
failSwapOn: false
resolvConf: %[3]s
registerNode: true
address: %[4]s
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
podLogsDir: %[5]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %[6]s}
authorization:
  mode: AlwaysAllow
serializeImagePulls: false
`, n.cgroupRoot, containerdSocket(n.dir), filepath.Join(n.dir, "resolv.conf"), n.IP,
		filepath.Join(n.dir, "pod-logs"), clientCA)
}

// kubeletTunables are the kernel settings the kubelet sets at start unless they already
// have its values (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1, ...),
// or refuses to start with protectKernelDefaults. They are global, not per network
// namespace: a test must not turn this machine's oopses into panics. The kubelet runs in
// a mount namespace of its own in which a file with its value is bound over each, so it
// finds them as it wants them and writes nothing.
var kubeletTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// kubeletArgv is the kubelet's command line: a shell in a new mount namespace that binds
// the tunables' files, then becomes the kubelet. The namespace's copy of the node's
// folder stays in the peer group of the host's shared mount of it (sharedDir), so that
// the volumes the kubelet mounts for pods (a projected ServiceAccount token is a tmpfs)
// reach containerd, which mounts them into containers; /proc is made a slave first, so
// that the binds over /proc/sys stay in the kubelet's namespace.
func kubeletArgv(n *Node, bin, kubeconfig, config string) ([]string, error) {
	tunables := filepath.Join(n.dir, "sysctl")
	if err := os.MkdirAll(tunables, 0o755); err != nil {
		return nil, err
	}
	var script strings.Builder
	script.WriteString("set -e\nmount --make-rslave /proc\n")
	for path, value := range kubeletTunables {
		file := filepath.Join(tunables, strings.ReplaceAll(path, "/", "."))
		if err := os.WriteFile(file, []byte(value+"\n"), 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(&script, "mount --bind %s /proc/sys/%s\n", file, path)
	}
	script.WriteString(`exec "$@"` + "\n")
	return []string{
		"unshare", "--mount", "--propagation", "unchanged", "--",
		"sh", "-c", script.String(), "kubelet",
		filepath.Join(bin, "kubelet"),
		"--config=" + config,
		"--kubeconfig=" + kubeconfig,
		"--root-dir=" + filepath.Join(n.dir, "kubelet"),
		"--hostname-override=" + n.Name,
		"--node-ip=" + n.IP.String(),
		"--v=2",
	}, nil
}

// kubeProxyConfig is the node's kube-proxy configuration: nftables mode; the pod range is
// the topology's supernet. Conntrack is left as the kernel has it: its limits are global
// and read-only from a network namespace other than the host's.
func kubeProxyConfig(hostname, kubeconfig, clusterCIDR string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: %[1]s
clusterCIDR: %[2]s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: %[3]s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
`, hostname, clusterCIDR, kubeconfig)
}
