package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

var netnsSeq atomic.Int64

// NewNetns makes a named network namespace, prefix-<pid>-<n>, and deletes it when the test
// ends. It first deletes the namespaces of prefix that earlier test processes, since gone,
// left behind (a test killed by go test's timeout runs no cleanup).
func NewNetns(t testing.TB, prefix string) string {
	t.Helper()
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			rest, ok := strings.CutPrefix(e.Name(), prefix+"-")
			if !ok {
				continue
			}
			pid, _, _ := strings.Cut(rest, "-")
			if n, err := strconv.Atoi(pid); err == nil && n != os.Getpid() && !alive(n) {
				_ = exec.Command("ip", "netns", "delete", e.Name()).Run()
			}
		}
	}
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	return name
}

func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}
