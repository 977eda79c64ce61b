package testenv

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReapOnExit: a process this test binary starts outlives it when the binary is
// killed, unless ReapOnExit watches it. The test runs itself as a child that starts a
// sleep, reports its pid, and is then killed with SIGKILL (as go test's timeout would);
// the sleep must be gone soon after. With stop called first, the sleep survives.
func TestReapOnExit(t *testing.T) {
	if os.Getenv("EGRESSGW_REAP_CHILD") != "" {
		reapChild()
		return
	}
	for _, stopFirst := range []bool{false, true} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReapOnExit$")
		cmd.Env = append(os.Environ(), "EGRESSGW_REAP_CHILD=1", "EGRESSGW_REAP_STOP="+strconv.FormatBool(stopFirst))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("the child said nothing: %v", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "sleep ")))
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("the child said %q", line)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		gone := false
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			// The sleep is reparented to init, which reaps it; until then it is a zombie.
			if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err != nil || strings.Contains(string(stat), ") Z ") {
				gone = true
				break
			}
		}
		switch {
		case !stopFirst && !gone:
			t.Errorf("the sleep (pid %d) outlived the killed test binary for 5 s", pid)
		case stopFirst && gone:
			t.Errorf("the sleep (pid %d) was killed although its watchdog was stopped first", pid)
		}
	}
}

// reapChild is TestReapOnExit's child: it starts a sleep, has it reaped, says its pid,
// and waits to be killed.
func reapChild() {
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		os.Exit(1)
	}
	stop, err := ReapOnExit(sleep.Process.Pid)
	if err != nil {
		os.Exit(1)
	}
	if os.Getenv("EGRESSGW_REAP_STOP") == "true" {
		stop()
	}
	os.Stdout.WriteString("sleep " + strconv.Itoa(sleep.Process.Pid) + "\n")
	time.Sleep(30 * time.Second)
	os.Exit(0)
}

func TestChildren(t *testing.T) {
	sleep := exec.Command("sleep", "10")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
	pids, err := Children("sleep")
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || pids[0] != sleep.Process.Pid {
		t.Errorf("Children(sleep) = %v, want [%d]", pids, sleep.Process.Pid)
	}
	if pids, _ := Children("no-such-command"); len(pids) != 0 {
		t.Errorf("Children(no-such-command) = %v", pids)
	}
}
