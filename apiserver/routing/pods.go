package routing

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// PodOf is what the decision knows of a pod. Its IP is its first IPv4 address: PodIP,
// or else the first IPv4 of PodIPs (an IPv6-first dual-stack pod lists it second).
func PodOf(p *corev1.Pod) Pod {
	return Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, IP: podIPv4(p),
		Node: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork}
}

func podIPv4(p *corev1.Pod) netip.Addr {
	if ips := PodIPv4s(p); len(ips) > 0 {
		return ips[0]
	}
	return netip.Addr{}
}

// PodIPv4s are every IPv4 address of a pod, PodIP first, each once.
func PodIPv4s(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	for _, raw := range append([]corev1.PodIP{{IP: p.Status.PodIP}}, p.Status.PodIPs...) {
		if ip, err := netip.ParseAddr(raw.IP); err == nil && ip.Is4() && !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out
}

// Finished says whether a pod has stopped for good (Succeeded or Failed): its IP may
// already be another pod's.
func Finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
