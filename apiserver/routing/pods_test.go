package routing

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status corev1.PodStatus
		want   netip.Addr
	}{
		{name: "PodIP", status: corev1.PodStatus{PodIP: "198.18.1.10", PodIPs: []corev1.PodIP{{IP: "198.18.1.10"}}}, want: netip.MustParseAddr("198.18.1.10")},
		{name: "IPv6 first, IPv4 second", status: corev1.PodStatus{PodIP: "fd00::a", PodIPs: []corev1.PodIP{{IP: "fd00::a"}, {IP: "198.18.1.11"}}}, want: netip.MustParseAddr("198.18.1.11")},
		{name: "IPv6 only", status: corev1.PodStatus{PodIP: "fd00::a"}},
		{name: "no IP yet", status: corev1.PodStatus{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "alice", Name: "frontend", Labels: map[string]string{"role": "frontend"}},
				Spec: corev1.PodSpec{NodeName: "node1", HostNetwork: true}, Status: tc.status}
			got := PodOf(p)
			if got.IP != tc.want {
				t.Errorf("IP = %v, want %v", got.IP, tc.want)
			}
			if got.Namespace != "alice" || got.Name != "frontend" || got.Node != "node1" || !got.HostNetwork || got.Labels["role"] != "frontend" {
				t.Errorf("PodOf = %+v: lost the pod's identity", got)
			}
		})
	}
	for phase, want := range map[corev1.PodPhase]bool{corev1.PodRunning: false, corev1.PodPending: false, corev1.PodSucceeded: true, corev1.PodFailed: true} {
		if got := Finished(&corev1.Pod{Status: corev1.PodStatus{Phase: phase}}); got != want {
			t.Errorf("Finished(%s) = %v, want %v", phase, got, want)
		}
	}
}
