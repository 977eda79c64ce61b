package heartbeat

import (
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The Lease half of the contract between a node agent and the controller. Each node agent
// renews the Lease networking.NodeNamespace/LeasePrefix+<node> (and writes the
// NetworkGatewayNode networking.NodeNamespace/<node>); the controller reads both to decide
// which nodes may hold floating IPs.
const LeasePrefix = "egressgw-node-"

// LeaseDurationAnnotation on a heartbeat Lease gives its duration in milliseconds, for
// grants shorter than a second or not a whole number of seconds; spec.leaseDurationSeconds
// then holds the duration rounded up. The controller prefers the annotation.
const LeaseDurationAnnotation = "egressgw.io/lease-duration-ms"

// LeaseName is the name of a node's heartbeat Lease.
func LeaseName(node string) string { return LeasePrefix + node }

// StampLease makes l a renewal of node's heartbeat, valid for d: its holder, its
// duration in whole seconds rounded up and, exactly, in LeaseDurationAnnotation, and the
// time of renewal.
func StampLease(l *coordinationv1.Lease, node string, d time.Duration) {
	l.Spec.HolderIdentity = &node
	seconds := int32((d + time.Second - 1) / time.Second)
	l.Spec.LeaseDurationSeconds = &seconds
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[LeaseDurationAnnotation] = strconv.FormatInt(d.Milliseconds(), 10)
	l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
}

// LeaseDuration is how long a renewal of the heartbeat Lease l is valid: the
// annotation if it is shorter than the whole seconds of the spec (a Lease whose
// annotation claims longer is read by its spec), else the spec; 2 s if neither says.
func LeaseDuration(l *coordinationv1.Lease) time.Duration {
	d := 2 * time.Second
	if s := l.Spec.LeaseDurationSeconds; s != nil && *s > 0 {
		d = time.Duration(*s) * time.Second
	}
	if ms, err := strconv.ParseInt(l.Annotations[LeaseDurationAnnotation], 10, 64); err == nil && ms > 0 {
		d = min(d, time.Duration(ms)*time.Millisecond)
	}
	return d
}
