package placement

import (
	"maps"
	"net/netip"
	"slices"
	"testing"
)

func TestStandbys(t *testing.T) {
	specGateway := ngg("default", 0, "192.168.1.100", "192.168.1.101", "192.168.1.102")
	tests := []struct {
		name          string
		gateways      []Gateway
		nodes         []Node
		current       map[netip.Addr]string
		standbys      map[netip.Addr]string // the previous placement's
		wantAssigned  map[netip.Addr]string
		wantStandbys  map[netip.Addr]string
		wantNoStandby map[netip.Addr]string
		wantMoves     []Move
	}{{
		name:         "the spec's two-node example: each IP's standby is the other worker",
		gateways:     []Gateway{specGateway},
		nodes:        []Node{worker("worker1", lan), worker("worker2", lan)},
		wantAssigned: on("192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker1"),
		wantStandbys: on("192.168.1.100", "worker2", "192.168.1.101", "worker1", "192.168.1.102", "worker2"),
	}, {
		name:         "one holder's IPs spread over the others as a failover would spread them",
		gateways:     []Gateway{specGateway},
		nodes:        []Node{worker("worker1", lan), worker("worker2", lan), worker("worker3", lan)},
		current:      on("192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker1"),
		wantAssigned: on("192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker1"),
		// The same nodes as "a down node's IPs go to the next available nodes, spread".
		wantStandbys: on("192.168.1.100", "worker3", "192.168.1.101", "worker3", "192.168.1.102", "worker2"),
	}, {
		name:         "a busier worker comes before an idle control-plane node",
		gateways:     []Gateway{ngg("gw", 0, "192.168.1.100", "192.168.1.101", "192.168.1.102")},
		nodes:        []Node{controlPlane("aaa-cp", lan), worker("worker1", lan), worker("worker2", lan)},
		current:      on("192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker2"),
		wantAssigned: on("192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker2"),
		wantStandbys: on("192.168.1.100", "worker2", "192.168.1.101", "worker1", "192.168.1.102", "worker1"),
	}, {
		name:         "a control-plane node is the standby when no other worker can take the IP",
		gateways:     []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:        []Node{controlPlane("cp1", lan), worker("worker1", lan), worker("worker2", "10.0.0.0/24")},
		wantAssigned: on("192.168.1.100", "worker1"),
		wantStandbys: on("192.168.1.100", "cp1"),
	}, {
		name:          "no other node on the subnet: no standby, and why",
		gateways:      []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:         []Node{worker("worker1", lan), worker("worker2", "10.0.0.0/24")},
		wantAssigned:  on("192.168.1.100", "worker1"),
		wantNoStandby: on("192.168.1.100", "no other node has a subnet containing 192.168.1.100"),
	}, {
		name:          "the only other node is Down",
		gateways:      []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:         []Node{worker("worker1", lan), down(worker("worker2", lan))},
		wantAssigned:  on("192.168.1.100", "worker1"),
		wantNoStandby: on("192.168.1.100", "no other Up node has a subnet containing 192.168.1.100 (1 that do are Down)"),
	}, {
		name:          "the only other node is cordoned",
		gateways:      []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:         []Node{worker("worker1", lan), cordoned(worker("worker2", lan))},
		wantAssigned:  on("192.168.1.100", "worker1"),
		wantNoStandby: on("192.168.1.100", "every other Up node with a subnet containing 192.168.1.100 is cordoned"),
	}, {
		name:         "a standby stays named when an idle node joins",
		gateways:     []Gateway{ngg("gw", 0, "192.168.1.100", "192.168.1.101")},
		nodes:        []Node{worker("worker0", lan), worker("worker1", lan), worker("worker2", lan)},
		current:      on("192.168.1.100", "worker1", "192.168.1.101", "worker2"),
		standbys:     on("192.168.1.100", "worker2", "192.168.1.101", "worker1"),
		wantAssigned: on("192.168.1.100", "worker1", "192.168.1.101", "worker2"),
		wantStandbys: on("192.168.1.100", "worker2", "192.168.1.101", "worker1"),
	}, {
		name:         "a standby that went Down, or now holds the IP, is replaced",
		gateways:     []Gateway{ngg("gw", 0, "192.168.1.100", "192.168.1.101")},
		nodes:        []Node{worker("worker0", lan), worker("worker1", lan), down(worker("worker2", lan))},
		current:      on("192.168.1.100", "worker1", "192.168.1.101", "worker0"),
		standbys:     on("192.168.1.100", "worker2", "192.168.1.101", "worker0"),
		wantAssigned: on("192.168.1.100", "worker1", "192.168.1.101", "worker0"),
		wantStandbys: on("192.168.1.100", "worker0", "192.168.1.101", "worker1"),
	}, {
		name:         "a failover goes to the named standby, not to an idler node",
		gateways:     []Gateway{ngg("gw", 0, "192.168.1.100", "192.168.1.101")},
		nodes:        []Node{worker("worker0", lan), down(worker("worker1", lan)), worker("worker2", lan)},
		current:      on("192.168.1.100", "worker1", "192.168.1.101", "worker2"),
		standbys:     on("192.168.1.100", "worker2", "192.168.1.101", "worker1"),
		wantAssigned: on("192.168.1.100", "worker2", "192.168.1.101", "worker2"),
		wantStandbys: on("192.168.1.100", "worker0", "192.168.1.101", "worker0"),
		wantMoves:    []Move{{IP: addr("192.168.1.100"), From: "worker1", To: "worker2", Reason: MoveNodeDown}},
	}, {
		name:         "a standby that cannot take the IP is passed over on failover",
		gateways:     []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:        []Node{worker("worker0", lan), down(worker("worker1", lan)), cordoned(worker("worker2", lan))},
		current:      on("192.168.1.100", "worker1"),
		standbys:     on("192.168.1.100", "worker2"),
		wantAssigned: on("192.168.1.100", "worker0"),
		wantNoStandby: on("192.168.1.100",
			"every other Up node with a subnet containing 192.168.1.100 is cordoned"),
		wantMoves: []Move{{IP: addr("192.168.1.100"), From: "worker1", To: "worker0", Reason: MoveNodeDown}},
	}, {
		name:         "an unplaced IP has neither a standby nor a reason for none",
		gateways:     []Gateway{ngg("gw", 0, "198.51.100.50")},
		nodes:        []Node{worker("worker1", lan)},
		wantAssigned: map[netip.Addr]string{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Place(Input{Gateways: tt.gateways, Nodes: tt.nodes, Current: tt.current, Standbys: tt.standbys})
			if !maps.Equal(got.Assignment, tt.wantAssigned) {
				t.Errorf("Assignment:\n got %v\nwant %v", got.Assignment, tt.wantAssigned)
			}
			if !maps.Equal(got.Standbys, tt.wantStandbys) {
				t.Errorf("Standbys:\n got %v\nwant %v", got.Standbys, tt.wantStandbys)
			}
			if !maps.Equal(got.NoStandby, tt.wantNoStandby) {
				t.Errorf("NoStandby:\n got %q\nwant %q", got.NoStandby, tt.wantNoStandby)
			}
			if !slices.Equal(got.Moves, tt.wantMoves) {
				t.Errorf("Moves:\n got %v\nwant %v", got.Moves, tt.wantMoves)
			}
		})
	}
}
