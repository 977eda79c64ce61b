// Package testenv holds what many test packages need and nothing else: the rule for
// tests that need root, a bounded worker pool for loading benchmarks, memory readings
// from /proc, and child processes that die with the test binary. It imports only the
// standard library, so any package's tests may use it.
package testenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// RequireRoot skips a test that needs root (network namespaces, BPF, nftables), except
// under CI=true, where it fails: CI runs as root, and a skipped test there would hide a
// broken feature. why says what the test needs root for.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("this test needs root (%s), and CI must run it as root", why)
	}
	t.Skipf("needs root (%s)", why)
}

// Parallel runs f for 0..n-1 on workers goroutines and returns the first error.
func Parallel(n, workers int, f func(int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}

// ProcStatus reads a size field of /proc/<pid>/status, such as "VmRSS" or "VmHWM" (the
// peak resident set), in bytes. pid 0 is this process.
func ProcStatus(pid int, field string) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s in %s: %w", field, path, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}
