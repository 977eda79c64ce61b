package heartbeat

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

func TestHeartbeatDuration(t *testing.T) {
	for _, d := range []time.Duration{600 * time.Millisecond, time.Second, 2500 * time.Millisecond} {
		var l coordinationv1.Lease
		StampLease(&l, "worker1", d)
		if got := LeaseDuration(&l); got != d {
			t.Errorf("stamped %s, read %s", d, got)
		}
		if *l.Spec.HolderIdentity != "worker1" || l.Spec.RenewTime == nil {
			t.Errorf("stamped %s: holder %q, renewTime %v", d, *l.Spec.HolderIdentity, l.Spec.RenewTime)
		}
	}
	// An annotation that claims longer than the whole seconds is read by the seconds.
	var l coordinationv1.Lease
	StampLease(&l, "worker1", time.Second)
	l.Annotations[LeaseDurationAnnotation] = "60000"
	if got := LeaseDuration(&l); got != time.Second {
		t.Errorf("a 60 s annotation on a 1 s Lease read as %s, want 1s", got)
	}
	if got := LeaseDuration(&coordinationv1.Lease{}); got != 2*time.Second {
		t.Errorf("a Lease that says nothing read as %s, want the 2 s default", got)
	}
}
