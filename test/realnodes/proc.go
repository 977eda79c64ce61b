package realnodes

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egressgw/egressgw/test/testenv"
)

// process is a node component: started in the node's network namespace with nsenter
// (not `ip netns exec`, which mounts a /sys of the namespace and hides the host's cgroup
// hierarchy from the kubelet), logging to a file, dying with the test binary.
type process struct {
	name, ns, dir string
	argv          []string
	log           string
	cmd           *exec.Cmd
	exited        chan error
}

// startIn starts argv in network namespace ns, logging to dir/name.log. It fails if the
// process exits within a second, with the log's tail.
func startIn(ns, dir, name string, argv []string) (*process, error) {
	return start(ns, dir, name, argv, os.O_TRUNC)
}

// restart starts p's command again once it has exited, appending to its log.
func (p *process) restart() (*process, error) {
	if err := p.running(); err == nil {
		return nil, fmt.Errorf("%s in %s is still running", p.name, p.ns)
	}
	return start(p.ns, p.dir, p.name, p.argv, os.O_APPEND)
}

// kill ends the process with SIGKILL, as a crash does, and waits for it.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	err := <-p.exited
	p.exited <- err
}

func start(ns, dir, name string, argv []string, mode int) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|mode, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child holds its own descriptor
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testenv.Spawn(cmd); err != nil {
		return nil, fmt.Errorf("starting %s in %s: %w", name, ns, err)
	}
	p := &process{name: name, ns: ns, dir: dir, argv: argv, log: logPath, cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	select {
	case err := <-p.exited:
		p.exited <- err
		return nil, fmt.Errorf("%s in %s exited at once: %v\n%s", name, ns, err, tail(logPath, 4000))
	case <-time.After(time.Second):
	}
	return p, nil
}

// stop ends the process with SIGTERM and, after grace, SIGKILL.
func (p *process) stop(grace time.Duration) error {
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("%s did not stop within %s of SIGTERM; killed it", p.name, grace)
}

// running says whether the process is still up, and if not, why.
func (p *process) running() error {
	select {
	case err := <-p.exited:
		p.exited <- err
		return fmt.Errorf("%s exited: %v\n%s", p.name, err, tail(p.log, 4000))
	default:
		return nil
	}
}

// tail is the end of a file, at most n bytes.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// killByCmdline kills, with SIGKILL, the processes whose command line contains marker:
// the containerd shims of one node, which containerd leaves running when it stops (they
// outlive a containerd restart by design). It returns how many it killed.
func killByCmdline(marker string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	killed := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed++
		}
	}
	return killed, nil
}

// unmountUnder lazily unmounts every mount point under dir, deepest first: the rootfs
// overlays, /dev/shm and network-namespace files of a containerd that did not remove them.
func unmountUnder(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	var errs []error
	for i := len(points) - 1; i >= 0; i-- {
		if err := syscall.Unmount(points[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", points[i], err))
		}
	}
	return errors.Join(errs...)
}

// sharedDir bind-mounts dir onto itself as a shared mount, so that what one mount
// namespace mounts under it (the kubelet's pod volumes) propagates to the others that
// copied it (the host's, containerd's). unmountUnder removes it with the rest.
func sharedDir(dir string) error {
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting %s onto itself: %w", dir, err)
	}
	if err := syscall.Mount("", dir, "", syscall.MS_SHARED|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("making %s a shared mount: %w", dir, err)
	}
	return nil
}

// killInNetns kills (SIGKILL) every process named comm in network namespace ns (a
// host-network pod's, for one), and returns how many it killed.
func killInNetns(ns, comm string) (int, error) {
	var want syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns, &want); err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	killed := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(name)) != comm {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil || st.Ino != want.Ino || st.Dev != want.Dev {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed++
		}
	}
	return killed, nil
}
