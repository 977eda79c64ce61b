package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// spawner is the one OS thread that starts processes with a Pdeathsig. The kernel sends
// Pdeathsig when the thread that forked a child exits, not the process; and the harness
// ends threads (those it locked into a network namespace). A thread locked here for good
// never ends, and no other goroutine ever runs on it.
var spawner = sync.OnceValue(func() chan<- func() {
	jobs := make(chan func())
	go func() {
		runtime.LockOSThread()
		for job := range jobs {
			job()
		}
	}()
	return jobs
})

// Spawn starts cmd from the spawner thread, so that a Pdeathsig in cmd.SysProcAttr
// fires when this process dies, and only then.
func Spawn(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	spawner() <- func() { errc <- cmd.Start() }
	return <-errc
}

// ReapOnExit kills process pid if this process dies first, even by SIGKILL or go
// test's timeout, which run no cleanup. (envtest starts etcd and kube-apiserver without
// a Pdeathsig; they outlived a killed test binary.) A watchdog shell, started with a
// Pdeathsig, waits; when this process dies the kernel sends it SIGTERM, and it kills
// pid. stop ends the watchdog without killing anything: call it before stopping the
// process the usual way.
func ReapOnExit(pid int) (stop func(), err error) {
	// It says so once its trap is set: a SIGTERM before that would end it and kill nothing.
	script := `trap 'kill -KILL "$1" 2>/dev/null; exit 0' TERM; echo ready; while :; do sleep 1; done`
	cmd := exec.Command("sh", "-c", script, "egressgw-reaper", strconv.Itoa(pid))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := Spawn(cmd); err != nil {
		return nil, fmt.Errorf("starting the watchdog for process %d: %w", pid, err)
	}
	done := make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("it said %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(done)
	}()
	stop = func() {
		// The whole group: the shell and its sleep, with no trap run.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = errors.New("it did not start within 10 s")
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("starting the watchdog for process %d: %w", pid, err)
	}
	return stop, nil
}

// Children lists the processes whose parent is this process and whose command name
// (/proc/<pid>/comm, at most 15 bytes) is one of names.
func Children(names ...string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err != nil || ppid != self {
			continue
		}
		for _, n := range names {
			if s[open+1:end] == n {
				out = append(out, pid)
				break
			}
		}
	}
	return out, nil
}
