package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/egressgw/egressgw/test/testenv"
)

// RestartAPIServer stops kube-apiserver, keeps it down for the given time, and starts
// it again with the same command line, certificates and etcd, then waits until it is
// ready. It asks kube-apiserver to stop (SIGTERM) and kills it if it is still draining
// requests after 5 s. Every client's connections break, as in a real restart; nothing
// else changes.
func (cp *ControlPlane) RestartAPIServer(down time.Duration) error {
	return cp.restartAPIServer(down, nil)
}

// restartAPIServer is RestartAPIServer with the command line changed by edit, if not nil.
func (cp *ControlPlane) restartAPIServer(down time.Duration, edit func(argv []string) []string) error {
	pid, argv, env, err := cp.apiServerProcess()
	if err != nil {
		return err
	}
	if edit != nil {
		argv = edit(argv)
	}
	// Our own child (started by an earlier restart) must be reaped to be gone.
	gone := func() bool { return syscall.Kill(pid, 0) != nil }
	if cp.restarted != nil && cp.restarted.Process.Pid == pid {
		exited := make(chan struct{})
		go func() {
			_ = cp.restarted.Wait()
			close(exited)
		}()
		gone = func() bool {
			select {
			case <-exited:
				return true
			default:
				return false
			}
		}
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	killed := false
	for deadline := time.Now().Add(5 * time.Second); !gone(); time.Sleep(20 * time.Millisecond) {
		if !killed && time.Now().After(deadline) {
			killed = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			return errors.New("kube-apiserver did not stop")
		}
	}
	cp.unreap(pid) // gone: its pid may be reused
	cp.restarted = nil
	time.Sleep(down)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = nil, nil
	// It dies with the test binary; Stop ends it otherwise.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testenv.Spawn(cmd); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	cp.restarted = cmd
	kube, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && bytes.Equal(bytes.TrimSpace(body), []byte("ok")) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready a minute after its restart: %v %s", err, body)
		}
	}
}

// apiServerProcess finds this control plane's kube-apiserver by its secure port.
func (cp *ControlPlane) apiServerProcess() (int, []string, []string, error) {
	u, err := url.Parse(cp.Config.Host)
	if err != nil {
		return 0, nil, nil, err
	}
	port := "--secure-port=" + u.Port()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(raw, []byte("kube-apiserver")) {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(argv[0]) != "kube-apiserver" || !slices.Contains(argv, port) {
			continue
		}
		envRaw, err := os.ReadFile(filepath.Join(filepath.Dir(p), "environ"))
		if err != nil {
			return 0, nil, nil, err
		}
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid); err != nil {
			return 0, nil, nil, err
		}
		return pid, argv, strings.Split(strings.TrimRight(string(envRaw), "\x00"), "\x00"), nil
	}
	return 0, nil, nil, fmt.Errorf("no kube-apiserver process with %s", port)
}
