package validation

import (
	"testing"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// TestGatewayRefusesUnusableFloatingIPs: a floating IP that a node would announce on the
// segment must be a unicast host address; one that is link-local (the metadata-style
// 169.254.88.2 included), multicast, loopback, or a node subnet's network or broadcast
// address would hijack a host service or the segment's broadcast. A node's own address, or
// one in the pod or service CIDRs, or a router's, would hijack that node, pod, service or
// router. specCluster's node subnet is 192.168.1.0/24 (router 192.168.1.1), its pods
// 10.244.0.0/16, its services 10.96.0.0/12.
func TestGatewayRefusesUnusableFloatingIPs(t *testing.T) {
	tests := []struct {
		name    string
		ip      string
		old     []string
		wantErr string // empty: accepted
	}{
		{name: "a link-local address", ip: "169.254.88.2", wantErr: `spec.floatingIPs[0]: Invalid value: "169.254.88.2": is a link-local address (169.254.0.0/16)`},
		{name: "a multicast address", ip: "224.0.0.251", wantErr: `Invalid value: "224.0.0.251": is a multicast address`},
		{name: "a loopback address", ip: "127.0.0.1", wantErr: `Invalid value: "127.0.0.1": is a loopback address`},
		{name: "the unspecified address", ip: "0.0.0.0", wantErr: `Invalid value: "0.0.0.0": is in 0.0.0.0/8`},
		{name: "the limited broadcast address", ip: "255.255.255.255", wantErr: `Invalid value: "255.255.255.255": is reserved (240.0.0.0/4) or the broadcast address`},
		{name: "the node subnet's network address", ip: "192.168.1.0", wantErr: `Invalid value: "192.168.1.0": is the network address of node subnet 192.168.1.0/24; pick an unused host address in it`},
		{name: "the node subnet's broadcast address", ip: "192.168.1.255", wantErr: `Invalid value: "192.168.1.255": is the broadcast address of node subnet 192.168.1.0/24`},
		{name: "a pod's address", ip: "10.244.1.5", wantErr: `Invalid value: "10.244.1.5": is in the cluster's pod CIDR 10.244.1.0/24 (Node worker1's spec.podCIDRs); a floating IP must be an unused address in the nodes' subnet, outside the pod and service CIDRs`},
		{name: "an address of the configured pod CIDR", ip: "10.244.200.1", wantErr: `Invalid value: "10.244.200.1": is in the cluster's pod CIDR 10.244.0.0/16 (--pod-cidrs)`},
		{name: "a service's address", ip: "10.96.0.10", wantErr: `Invalid value: "10.96.0.10": is in the cluster's service CIDR 10.96.0.0/12 (--service-cidrs)`},
		{name: "a node's own address", ip: "192.168.1.12", wantErr: `Invalid value: "192.168.1.12": is the address of node worker2`},
		{name: "a pod's address outside the pod CIDRs (an IPAM that ignores Node.spec.podCIDRs)", ip: "192.168.1.77", wantErr: `Invalid value: "192.168.1.77": is the address of a pod on node worker2 (its NetworkGatewayNode's status.servedPodAddresses)`},
		{name: "the segment's router", ip: "192.168.1.1", wantErr: `Invalid value: "192.168.1.1": is a router on the segment (node worker1 routes through it`},
		{name: "a host address of the node subnet", ip: "192.168.1.254"},
		{name: "an unusable IP the gateway already had stays editable", ip: "169.254.88.2", old: []string{"169.254.88.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old *v1.NetworkGatewayGroupSpec
			if tt.old != nil {
				old = &v1.NetworkGatewayGroupSpec{FloatingIPs: tt.old}
			}
			errs, warnings := Gateway(gw("gateway4"), &v1.NetworkGatewayGroupSpec{FloatingIPs: []string{tt.ip}}, old, specCluster())
			var want []string
			if tt.wantErr != "" {
				want = []string{tt.wantErr}
			}
			check(t, errs, warnings, want, nil)
			if tt.wantErr == "" && len(errs) > 0 {
				t.Fatalf("refused: %v", errs)
			}
		})
	}
}
