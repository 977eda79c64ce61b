package realnodes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// APIPort is where the nodes reach kube-apiserver: topology.ControlIP:APIPort.
const APIPort = 6443

// Images are the image tarballs of hack/images that every node imports: the sandbox and
// the test client that pods run.
var Images = []string{"pause", "egressgw-testclient"}

// SandboxImage is the name containerd gives the pause tarball, which it runs as every
// pod's sandbox.
const SandboxImage = "docker.io/egressgw/pause:dev"

// TestClientImage is the name of the test client's image (test/peer's serve and who), and
// TestClientEntrypoint its program, for kubectl exec.
const (
	TestClientImage      = "docker.io/egressgw/egressgw-testclient:dev"
	TestClientEntrypoint = "/usr/local/bin/egressgw-testclient"
)

// Cluster is a set of real nodes on a topology, registered with a control plane.
type Cluster struct {
	Nodes []*Node

	cp      *controlplane.ControlPlane
	proxies []*topology.TCPProxy
	control *controlNode
}

// Node is one real node: containerd, the kubelet and kube-proxy in the network namespace
// of a topology node, with their files in a folder of its own.
type Node struct {
	*topology.Node
	dir        string // /tmp/<topology id>-<node>: short, for the containerd socket
	cgroupRoot string // /<topology id>-<node> in every cgroup v1 hierarchy

	containerd, kubelet, kubeProxy *process
}

// Binaries returns the folder with kubelet, kube-proxy, kube-scheduler and
// kube-controller-manager: EGRESSGW_NODES_DIR if set, otherwise what hack/nodes.sh builds
// (a no-op once built).
func Binaries() (string, error) {
	if dir := os.Getenv("EGRESSGW_NODES_DIR"); dir != "" {
		return dir, nil
	}
	return runScript(exec.Command(filepath.Join(controlplane.RepoRoot(), "hack", "nodes.sh")))
}

// ImageTarballs returns the tarballs of Images in .cache/images, building every image
// with hack/images (make images) first if one is missing or the sources changed.
func ImageTarballs() ([]string, error) {
	return imageTarballs(filepath.Join(controlplane.RepoRoot(), ".cache", "images"), Images)
}

// imageTarballs returns the tarballs of names in dir, building them with hack/images
// (its args after -out dir) if one is missing, or if the sources they are built from are
// not those of the last build: a stamp of the sources sits next to them.
func imageTarballs(dir string, names []string, args ...string) ([]string, error) {
	root := controlplane.RepoRoot()
	var paths []string
	missing := false
	for _, name := range names {
		p := filepath.Join(dir, name+".tar")
		if _, err := os.Stat(p); err != nil {
			missing = true
		}
		paths = append(paths, p)
	}
	stamp, err := sourceStamp(root)
	if err != nil {
		return nil, err
	}
	stampPath := filepath.Join(dir, "sources.sha256")
	if old, err := os.ReadFile(stampPath); missing || err != nil || string(old) != stamp {
		cmd := exec.Command("go", append([]string{"run", "./hack/images", "-out", dir}, args...)...)
		cmd.Dir = root
		if _, err := runScript(cmd); err != nil {
			return nil, err
		}
		if err := os.WriteFile(stampPath, []byte(stamp), 0o644); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// sourceStamp hashes what the images are built from: every Go file but tests, the BPF
// object and sources, go.mod and go.sum, and the Dockerfile, by path and content,
// outside .cache and .git.
func sourceStamp(root string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if name := e.Name(); path != root && (name == ".cache" || name == ".git") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, "_test.go") {
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".o", ".c", ".h", ".mod", ".sum":
		default:
			if e.Name() != "Dockerfile" {
				return nil
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", strings.TrimPrefix(path, root), len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

func runScript(cmd *exec.Cmd) (string, error) {
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, exit.Stderr)
		}
		return "", fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Start makes every node of topo a real node of cp, which must have been started with
// controlplane.Options{Nodes: true}: containerd with images imported, the kubelet, and
// kube-proxy, each node's pod CIDR that of the topology's address plan (set on its Node
// once the kubelet registers it). It returns once every Node exists; they become Ready
// a little later (WaitReady). On error everything started is stopped.
func Start(ctx context.Context, cp *controlplane.ControlPlane, topo *topology.Topology, bin string, images []string, cni CNI) (_ *Cluster, err error) {
	if err := sweep(); err != nil {
		return nil, fmt.Errorf("removing the nodes of dead test processes: %w", err)
	}
	c := &Cluster{cp: cp}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	u, err := url.Parse(cp.Config.Host)
	if err != nil {
		return nil, err
	}
	// The nodes' kubeconfigs name APIPort; pods reach kube-apiserver through the kubernetes
	// Service, whose endpoint is the advertised address at kube-apiserver's own port.
	for _, port := range []string{strconv.Itoa(APIPort), u.Port()} {
		proxy, err := topology.StartTCPProxy(topo.Control, net.JoinHostPort(topology.ControlIP.String(), port), u.Host)
		if err != nil {
			return nil, err
		}
		c.proxies = append(c.proxies, proxy)
	}
	server := fmt.Sprintf("https://%s:%d", topology.ControlIP, APIPort)
	if c.control, err = startControlNode(cp, topo, bin, server); err != nil {
		return nil, fmt.Errorf("the control-plane node: %w", err)
	}
	for _, tn := range topo.Nodes {
		n := &Node{Node: tn, dir: fmt.Sprintf("/tmp/%s-%s", topo.ID, tn.Name), cgroupRoot: fmt.Sprintf("/%s-%s", topo.ID, tn.Name)}
		c.Nodes = append(c.Nodes, n)
		if err := n.start(ctx, cp, bin, server, images, cni); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	kube, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		if err := c.setPodCIDR(ctx, kube, n); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (n *Node) start(ctx context.Context, cp *controlplane.ControlPlane, bin, server string, images []string, plugin CNI) error {
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	cni, err := cniConfig(plugin, n.NS, n.PodCIDR.String(), filepath.Join(n.dir, "ipam"))
	if err != nil {
		return err
	}
	if plugin == Bridge {
		if out, err := topology.Exec(n.NS, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"); err != nil {
			return fmt.Errorf("turning br_netfilter on (is the br_netfilter module loaded?): %w: %s", err, out)
		}
	}
	mayLower, err := mayLowerOOMScoreAdj()
	if err != nil {
		return err
	}
	clientCA, err := cp.KubeletClientCAFile()
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"resolv.conf":            nil,
		"cni/10-pods.conflist":   cni,
		"containerd.toml":        []byte(containerdConfig(n.dir, SandboxImage, !mayLower)),
		"kubelet-config.yaml":    []byte(kubeletConfig(n, clientCA)),
		"kube-proxy-config.yaml": []byte(kubeProxyConfig(n.Name, filepath.Join(n.dir, "kube-proxy.kubeconfig"), topology.PodSupernet.String())),
	}
	for name, data := range files {
		path := filepath.Join(n.dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	if err := makeCgroupRoot(n.cgroupRoot); err != nil {
		return err
	}
	if err := sharedDir(n.dir); err != nil {
		return err
	}
	if n.containerd, err = startIn(n.NS, n.dir, "containerd", containerdArgv(filepath.Join(n.dir, "containerd.toml"))); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitContainerd(wctx, containerdSocket(n.dir), n.containerd); err != nil {
		return err
	}
	if err := importImages(containerdSocket(n.dir), images); err != nil {
		return err
	}
	kubeletKubeconfig := filepath.Join(n.dir, "kubelet.kubeconfig")
	if err := cp.UserKubeconfig(kubeletKubeconfig, "system:node:"+n.Name, []string{"system:nodes"}, server); err != nil {
		return err
	}
	argv, err := kubeletArgv(n, bin, kubeletKubeconfig, filepath.Join(n.dir, "kubelet-config.yaml"))
	if err != nil {
		return err
	}
	if n.kubelet, err = startIn(n.NS, n.dir, "kubelet", argv); err != nil {
		return err
	}
	if err := cp.UserKubeconfig(filepath.Join(n.dir, "kube-proxy.kubeconfig"), "system:kube-proxy", nil, server); err != nil {
		return err
	}
	n.kubeProxy, err = startIn(n.NS, n.dir, "kube-proxy", []string{filepath.Join(bin, "kube-proxy"),
		"--config=" + filepath.Join(n.dir, "kube-proxy-config.yaml"), "--v=2"})
	return err
}

// setPodCIDR waits (at most a minute) for the kubelet to register node n, then gives
// the Node the topology's pod subnet of n, as an IPAM controller would: the topology
// routes that subnet to the node, and the node's CNI configuration allocates from it.
func (c *Cluster) setPodCIDR(ctx context.Context, kube kubernetes.Interface, n *Node) error {
	deadline := time.Now().Add(time.Minute)
	for {
		node, err := kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		switch {
		case err == nil && len(node.Spec.PodCIDRs) > 0:
			if node.Spec.PodCIDR != n.PodCIDR.String() {
				return fmt.Errorf("node %s has pod CIDR %s, not the topology's %s", n.Name, node.Spec.PodCIDR, n.PodCIDR)
			}
			return nil
		case err == nil:
			node.Spec.PodCIDR, node.Spec.PodCIDRs = n.PodCIDR.String(), []string{n.PodCIDR.String()}
			if _, err := kube.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
				return fmt.Errorf("setting the pod CIDR of node %s: %w", n.Name, err)
			}
			continue
		case !apierrors.IsNotFound(err):
			return err
		}
		if exitErr := errors.Join(n.kubelet.running(), n.containerd.running()); exitErr != nil {
			return fmt.Errorf("node %s: %w", n.Name, exitErr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the kubelet of node %s did not register its Node within a minute; its log ends:\n%s", n.Name, tail(n.kubelet.log, 6000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WaitReady waits until every Node is Ready, at most timeout.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	kube, err := kubernetes.NewForConfig(c.cp.Config)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		var notReady []string
		for _, n := range c.Nodes {
			node, err := kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !ready(node) {
				notReady = append(notReady, fmt.Sprintf("%s (%s)", n.Name, readyMessage(node)))
			}
			if exitErr := errors.Join(n.kubelet.running(), n.containerd.running(), n.kubeProxy.running()); exitErr != nil {
				return fmt.Errorf("node %s: %w", n.Name, exitErr)
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes not Ready within %s: %s", timeout, strings.Join(notReady, ", "))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func readyMessage(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Reason + ": " + c.Message
		}
	}
	return "no Ready condition yet"
}

// PodCIDRContains says whether ip is in node n's pod subnet.
func (n *Node) PodCIDRContains(ip netip.Addr) bool { return n.PodCIDR.Contains(ip) }

// Logs names the node's component logs.
func (n *Node) Logs() []string {
	return []string{filepath.Join(n.dir, "containerd.log"), filepath.Join(n.dir, "kubelet.log"), filepath.Join(n.dir, "kube-proxy.log")}
}

// KillKubelet kills the node's kubelet with SIGKILL, as a crash does: its pods and
// containerd keep running, and nothing restarts them.
func (n *Node) KillKubelet() { n.kubelet.kill() }

// RestartKubelet starts the kubelet killed by KillKubelet again, as its service manager
// would.
func (n *Node) RestartKubelet() (err error) {
	n.kubelet, err = n.kubelet.restart()
	return err
}

// KillHostProcesses kills with SIGKILL every process named comm in the node's network
// namespace (the processes of the node's host-network pods, for one), and returns how
// many it killed.
func (n *Node) KillHostProcesses(comm string) (int, error) { return killInNetns(n.NS, comm) }

// ContainerdSocket is the socket of the node's containerd, for ctr -a.
func (n *Node) ContainerdSocket() string { return containerdSocket(n.dir) }

// Close stops every node: kube-proxy and the kubelet, then every pod through the CRI,
// then containerd and any shim it left, and removes the nodes' mounts, cgroups and
// files. The topology and the control plane are the caller's to close.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.stop())
	}
	c.Nodes = nil
	if c.control != nil {
		errs = append(errs, c.control.stop())
		c.control = nil
	}
	for _, p := range c.proxies {
		p.Close()
	}
	c.proxies = nil
	return errors.Join(errs...)
}

func (n *Node) stop() error {
	var errs []error
	errs = append(errs, n.kubeProxy.stop(10*time.Second), n.kubelet.stop(10*time.Second))
	if n.containerd != nil {
		if err := n.containerd.running(); err == nil {
			errs = append(errs, removePods(containerdSocket(n.dir)))
		}
		errs = append(errs, n.containerd.stop(10*time.Second))
	}
	if _, err := killByCmdline(containerdSocket(n.dir)); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, killCgroupProcs(n.cgroupRoot))
	time.Sleep(200 * time.Millisecond) // what was killed exits and leaves its cgroup
	errs = append(errs, unmountUnder(n.dir))
	errs = append(errs, removeCgroupRoot(n.cgroupRoot))
	if err := os.RemoveAll(n.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// staleNode matches the folder of a node of a topology (/tmp/egw<pid>-<node>).
var staleNode = regexp.MustCompile(`^(egw(\d+)-node\d+)$`)

// sweep removes what nodes of dead test processes left: a test binary killed by go
// test's timeout takes containerd, the kubelet and kube-proxy with it (Pdeathsig), but
// not the shims and the pods, their mounts, cgroups and files.
func sweep() error {
	entries, err := os.ReadDir("/tmp")
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		m := staleNode.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		pid, err := strconv.Atoi(m[2])
		if err != nil || pid == os.Getpid() || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		n := &Node{dir: filepath.Join("/tmp", m[1]), cgroupRoot: "/" + m[1]}
		errs = append(errs, n.stop())
	}
	return errors.Join(errs...)
}
