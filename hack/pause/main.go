// Command pause is the pod sandbox's process: it holds the pod's namespaces by sleeping
// until SIGTERM or SIGINT, and, as the pod's PID 1 when the pod shares its process
// namespace, reaps the orphans that are reparented to it. make images builds it into the
// image egressgw/pause, for a node whose runtime cannot pull its own.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			fmt.Fprintf(os.Stderr, "pause: %s, exiting\n", s)
			os.Exit(0)
		}
		reap()
	}
}

// reap waits for every child that has exited: one SIGCHLD may stand for several.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
