package placement

import (
	"maps"
	"net/netip"
	"testing"
)

func TestViews(t *testing.T) {
	tests := []struct {
		name     string
		gateways []Gateway
		nodes    []Node
		current  map[netip.Addr]string
		gateway  string // the NetworkGatewayGroup in kube-system whose view is checked
		want     View
	}{{
		name:     "the spec's status with worker2 down",
		gateways: []Gateway{ngg("default", 0, "192.168.1.100", "192.168.1.101", "192.168.1.102")},
		nodes:    []Node{worker("worker1", lan), down(worker("worker2", lan))},
		current:  on("192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker1"),
		gateway:  "default",
		want: View{
			FloatingIPs: on("192.168.1.100", "worker1", "192.168.1.101", "worker1", "192.168.1.102", "worker1"),
			Nodes:       map[string]NodeState{"worker1": NodeUp, "worker2": NodeDown},
		},
	}, {
		name:     "only nodes that could hold one of the gateway's IPs are listed; cordoned shows Up",
		gateways: []Gateway{ngg("gateway1", 0, "192.168.1.100"), ngg("gateway2", 1, "10.0.0.5")},
		nodes:    []Node{cordoned(worker("worker1", lan)), worker("worker2", lan), worker("other", "10.0.0.0/24")},
		gateway:  "gateway1",
		want: View{
			FloatingIPs: on("192.168.1.100", "worker2"),
			Nodes:       map[string]NodeState{"worker1": NodeUp, "worker2": NodeUp},
		},
	}, {
		name:     "a conflicting IP is unplaced for the newer gateway and adds no nodes to it",
		gateways: []Gateway{ngg("old", 0, "192.168.1.100"), ngg("new", 1, "192.168.1.100", "10.0.0.5")},
		nodes:    []Node{worker("worker1", lan), worker("other", "10.0.0.0/24")},
		gateway:  "new",
		want: View{
			FloatingIPs: on("10.0.0.5", "other"),
			Nodes:       map[string]NodeState{"other": NodeUp},
			Unplaced:    on("192.168.1.100", "already used by NetworkGatewayGroup kube-system/old"),
		},
	}, {
		name:     "an IP no node can take is unplaced with the reason",
		gateways: []Gateway{ngg("gw", 0, "198.51.100.50", "192.168.1.100")},
		nodes:    []Node{down(worker("worker1", lan, "198.51.100.0/24")), worker("worker2", lan)},
		gateway:  "gw",
		want: View{
			FloatingIPs: on("192.168.1.100", "worker2"),
			Nodes:       map[string]NodeState{"worker1": NodeDown, "worker2": NodeUp},
			Unplaced:    on("198.51.100.50", "no Up node has a subnet containing 198.51.100.50 (1 that do are Down)"),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Gateways: tt.gateways, Nodes: tt.nodes, Current: tt.current}
			views := Views(in, Place(in))
			if len(views) != len(tt.gateways) {
				t.Errorf("got %d views, want one per gateway (%d)", len(views), len(tt.gateways))
			}
			got, ok := views[ngg(tt.gateway, 0).ID]
			if !ok {
				t.Fatalf("no view for gateway %q", tt.gateway)
			}
			if !maps.Equal(got.FloatingIPs, tt.want.FloatingIPs) {
				t.Errorf("FloatingIPs:\n got %v\nwant %v", got.FloatingIPs, tt.want.FloatingIPs)
			}
			if !maps.Equal(got.Nodes, tt.want.Nodes) {
				t.Errorf("Nodes:\n got %v\nwant %v", got.Nodes, tt.want.Nodes)
			}
			if !maps.Equal(got.Unplaced, tt.want.Unplaced) {
				t.Errorf("Unplaced:\n got %q\nwant %q", got.Unplaced, tt.want.Unplaced)
			}
		})
	}
}
