package realnodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CNIBinDir is where Debian's containernetworking-plugins puts the plugins.
const CNIBinDir = "/usr/lib/cni"

// containerdConfig is a containerd 1.6 configuration for one node: everything it keeps
// (root, state, the opt plugin's folder) under the node's folder, the CRI plugin with
// overlayfs and runc under cgroupfs, the node's CNI configuration folder, and our pause
// image as the sandbox, which the node has imported and never pulls. The pods' network
// namespaces are files under the state folder, not in the host's /run/netns.
//
// restrictOOMScoreAdj caps the OOM score adjustment containerd gives containers at its
// own: for a host on which this process may not lower one (no CAP_SYS_RESOURCE, as in
// some sandboxes), where runc would otherwise fail to start every pod sandbox, which
// the CRI gives -998 ("can't get final child's PID from pipe: EOF").
func containerdConfig(dir, sandboxImage string, restrictOOMScoreAdj bool) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %[3]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = %[8]t
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
`, filepath.Join(dir, "containerd", "root"), filepath.Join(dir, "containerd", "state"), containerdSocket(dir),
		filepath.Join(dir, "containerd", "opt"), sandboxImage, CNIBinDir, filepath.Join(dir, "cni"), restrictOOMScoreAdj)
}

// containerdSocket is the node's containerd socket: short, as a socket path must be.
func containerdSocket(dir string) string { return filepath.Join(dir, "containerd.sock") }

// CNI is the CNI plugin the nodes' pods get their network from: one of Debian's.
type CNI string

const (
	// PTP gives each pod a veth pair of its own, and the node a route to the pod's IP
	// through it: per-pod routes.
	PTP CNI = "ptp"
	// Bridge puts every pod's veth on one bridge, cni0, which holds the subnet's gateway
	// address (as Flannel and the bridge plugin do), with br_netfilter on, as Kubernetes
	// asks of bridge CNIs: bridged packets meet conntrack and the ip hooks at the bridge.
	Bridge CNI = "bridge"
)

// cniConfig is the node's CNI network: cni's, with an address of the node's pod subnet
// (host-local, which keeps its leases in the node's folder rather than the host-wide
// /var/lib/cni). The topology routes each node's pod subnet to it and masquerades what
// leaves the segment, so the plugin masquerades nothing.
func cniConfig(cni CNI, network, subnet, dataDir string) ([]byte, error) {
	plugin := map[string]any{
		"type":   string(cni),
		"ipMasq": false,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": dataDir,
			"ranges":  [][]map[string]string{{{"subnet": subnet}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
		},
	}
	switch cni {
	case PTP:
	case Bridge:
		plugin["bridge"], plugin["isGateway"] = "cni0", true
	default:
		return nil, fmt.Errorf("no CNI %q: %s or %s", cni, PTP, Bridge)
	}
	return json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": network, "plugins": []any{plugin}}, "", "  ")
}

// waitContainerd waits until containerd answers on its socket and its CRI plugin is up.
func waitContainerd(ctx context.Context, sock string, p *process) error {
	for {
		err := criCall(ctx, sock, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
			_, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
			return err
		})
		if err == nil {
			return nil
		}
		if exitErr := p.running(); exitErr != nil {
			return exitErr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd's CRI at %s did not answer: %w (last: %v)", sock, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// importImages imports image tarballs into the node's containerd, in the namespace the
// CRI plugin uses, where the kubelet finds them.
func importImages(sock string, tarballs []string) error {
	for _, t := range tarballs {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "--namespace", "k8s.io",
			"images", "import", "--snapshotter", "overlayfs", t).CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("ctr images import %s: %w: %s", t, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// criCall runs fn with a CRI runtime client of the containerd at sock.
func criCall(ctx context.Context, sock string, fn func(context.Context, runtimeapi.RuntimeServiceClient) error) error {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return fn(ctx, runtimeapi.NewRuntimeServiceClient(conn))
}

// removePods stops and removes every pod sandbox of the node's containerd, as `crictl rmp
// -fa` does: containerd then kills the containers, runs CNI DEL, unmounts their root
// filesystems and ends their shims. Run it once the kubelet is stopped.
func removePods(sock string) error {
	var ids []string
	err := criCall(context.Background(), sock, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
		resp, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return err
		}
		for _, s := range resp.Items {
			ids = append(ids, s.Id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing the pod sandboxes: %w", err)
	}
	var errs []error
	for _, id := range ids {
		errs = append(errs, criCall(context.Background(), sock, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
			if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				return fmt.Errorf("stopping pod sandbox %s: %w", id, err)
			}
			if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				return fmt.Errorf("removing pod sandbox %s: %w", id, err)
			}
			return nil
		}))
	}
	return errors.Join(errs...)
}

// capSysResource is CAP_SYS_RESOURCE's bit: it lets a process lower OOM score adjustments.
const capSysResource = 24

// mayLowerOOMScoreAdj says whether this process holds CAP_SYS_RESOURCE, which containerd
// (running as this process's child) needs to give a container a negative OOM score
// adjustment.
func mayLowerOOMScoreAdj() (bool, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, fmt.Errorf("CapEff in /proc/self/status: %w", err)
			}
			return caps&(1<<capSysResource) != 0, nil
		}
	}
	return false, errors.New("no CapEff in /proc/self/status")
}

// containerdArgv runs containerd in a mount namespace of its own, a slave of the host's
// (so that it sees the volumes the kubelet mounts for pods), with a bpffs of the node's
// own at /sys/fs/bpf: on a real machine every node has its own, and two node agents on
// this one machine, each told --bpf-dir=/sys/fs/bpf/egressgw by the DaemonSet, must not
// pin into one. It is shared, as systemd mounts it, which a pod's HostToContainer mount of
// it needs; the host's is unmounted in the namespace first, since containerd checks the
// first mount it finds at a hostPath, not the topmost. The shims, and so the containers,
// inherit the namespace; it goes when they do.
func containerdArgv(config string) []string {
	return []string{"unshare", "--mount", "--propagation", "slave", "--",
		"sh", "-c", "set -e\numount -l /sys/fs/bpf 2>/dev/null || true\nmount -t bpf bpf /sys/fs/bpf\nmount --make-shared /sys/fs/bpf\nexec \"$@\"\n", "containerd",
		"containerd", "--config", config}
}
