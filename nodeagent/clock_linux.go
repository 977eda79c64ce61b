package nodeagent

import (
	"time"

	"golang.org/x/sys/unix"
)

// monotonic reads CLOCK_MONOTONIC, the clock bpf_ktime_get_ns reads in the dataplane, so
// grant expiries written into BPF maps mean the same instant to the kernel.
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // CLOCK_MONOTONIC cannot fail on Linux.
	}
	return time.Duration(ts.Nano())
}
