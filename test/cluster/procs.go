package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/egressgw/egressgw/controller"
	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/testenv"
	"github.com/egressgw/egressgw/test/topology"
)

// Commands are the binaries a cluster runs, by name.
var Commands = map[string]string{
	"egressgw-controller": "./controller/cmd/egressgw-controller",
	"egressgw-agent":      "./nodeagent/cmd/egressgw-agent",
	"egressgw-apiserver":  "./apiserver/aggregated/cmd/egressgw-apiserver",
}

var buildOnce = sync.OnceValues(func() (string, error) {
	dir := filepath.Join(controlplane.RepoRoot(), ".cache", "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + "/"}
	for _, pkg := range Commands {
		args = append(args, pkg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = controlplane.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %v: %w\n%s", Commands, err, out)
	}
	return dir, nil
})

// Build compiles the cluster's binaries into .cache/bin, once per process.
func Build(context.Context) (string, error) { return buildOnce() }

// PeakRSS is the process's peak resident set (VmHWM), in bytes.
func (p *Process) PeakRSS() (int64, error) {
	return testenv.ProcStatus(p.cmd.Process.Pid, "VmHWM")
}

// Process is a running component, its output in a log file.
type Process struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func start(name, log string, env []string, argv ...string) (*Process, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// If the harness dies, so do its components.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := testenv.Spawn(cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, Log: log, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// Kill kills the process at once, as a crash or an OOM kill does, and waits for it.
func (p *Process) Kill() error {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
	return nil
}

// Stop asks the process to stop, and kills it after 10 seconds.
func (p *Process) Stop() error {
	if p == nil || !p.Running() {
		return nil
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		return errors.Join(fmt.Errorf("%s did not stop in 10 s; killed", p.Name), p.Kill())
	}
	return nil
}

// Tail returns the last lines of the process's log, for failure messages.
func (p *Process) Tail(lines int) string {
	data, err := os.ReadFile(p.Log)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// HeartbeatPort is where controller replica i answers heartbeats: ControlIP:HeartbeatPort+i.
const HeartbeatPort = 7471

// Leader election timings of the local cluster: a leader that dies is replaced in 2 s.
const (
	electionLease = 2 * time.Second
	electionRenew = 1500 * time.Millisecond
	electionRetry = 250 * time.Millisecond
)

// StartController starts controller replica i inside the control-plane namespace, where
// the nodes reach it (heartbeats) and it reaches the API server through the proxy, as a
// controller pod would.
func (c *Cluster) StartController(i int) error {
	log := filepath.Join(c.Logs, fmt.Sprintf("controller-%d.log", i))
	addr := fmt.Sprintf("%s:%d", topology.ControlIP, HeartbeatPort+i)
	p, err := start(fmt.Sprintf("controller-%d", i), log, nil,
		"ip", "netns", "exec", c.Topo.Control, filepath.Join(c.Bin, "egressgw-controller"),
		"--kubeconfig="+c.NodeKubeconfig,
		"--leader-elect=true", "--leader-election-namespace="+controlplane.WebhookNamespace,
		"--leader-elect-lease-duration="+electionLease.String(), "--leader-elect-renew-deadline="+electionRenew.String(),
		"--leader-elect-retry-period="+electionRetry.String(),
		"--heartbeat-bind-address="+addr,
		"--grace="+c.opts.Grace.String(), "--metrics-bind-address=0", "--health-probe-bind-address=0", "-v=3")
	if err != nil {
		return err
	}
	for len(c.controllers) <= i {
		c.controllers = append(c.controllers, nil)
	}
	c.controllers[i] = p
	return nil
}

// Controller returns controller replica i.
func (c *Cluster) Controller(i int) *Process { return c.controllers[i] }

// StartAgent starts the node agent of node, inside the node's namespace.
func (c *Cluster) StartAgent(node string) error {
	n := c.Node(node)
	if n == nil {
		return fmt.Errorf("no node %s", node)
	}
	if p := c.agents[node]; p != nil && p.Running() {
		return fmt.Errorf("the agent of %s runs already", node)
	}
	log := filepath.Join(c.Logs, "agent-"+node+".log")
	p, err := start("agent-"+node, log, nil,
		"ip", "netns", "exec", n.NS, filepath.Join(c.Bin, "egressgw-agent"),
		"--kubeconfig="+c.NodeKubeconfig, "--node-name="+node,
		"--bpf-dir="+c.bpfDir(node),
		"--cluster-cidrs="+topology.Segment.String()+","+ServiceCIDR.String(),
		"--lease-duration="+c.opts.LeaseDuration.String(),
		"--renew-interval="+(c.opts.LeaseDuration/4).String(),
		"--controller-lease="+controlplane.WebhookNamespace+"/"+controller.LeaderElectionID,
		"--heartbeat-interval="+min(100*time.Millisecond, c.opts.LeaseDuration/6).String(),
		"--probe-bind-address="+n.IP.String()+":9464",
		"--metrics-bind-address="+netip.AddrPortFrom(n.IP, AgentMetricsPort).String(), "-v=3")
	if err != nil {
		return err
	}
	c.agents[node] = p
	return nil
}

// Agent returns the agent process of node, or nil.
func (c *Cluster) Agent(node string) *Process { return c.agents[node] }

// uninstallAgent removes what the node's agent left in the kernel.
func (c *Cluster) uninstallAgent(node string) error {
	n := c.Node(node)
	if n == nil || c.Bin == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.NS, filepath.Join(c.Bin, "egressgw-agent"),
		"--uninstall", "--node-name="+node, "--bpf-dir="+c.bpfDir(node)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("uninstalling the agent of %s: %w: %s", node, err, out)
	}
	return nil
}
