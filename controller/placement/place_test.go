package placement

import (
	"net/netip"
	"testing"
)

func TestPlace(t *testing.T) {
	specGateway := ngg("default", 0, "192.168.1.100", "192.168.1.101", "192.168.1.102")
	tests := []struct {
		name     string
		gateways []Gateway
		nodes    []Node
		current  map[netip.Addr]string
		want     Result
	}{{
		name:     "the spec's two-node example: a node without an IP first, then spread",
		gateways: []Gateway{specGateway},
		nodes:    []Node{worker("worker2", lan), worker("worker1", lan)},
		want: Result{Assignment: on(
			"192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker1")},
	}, {
		name: "the spec's three gateways are placed oldest first",
		gateways: []Gateway{
			ngg("gateway3", 3, "192.168.1.102"),
			ngg("gateway1", 1, "192.168.1.100"),
			ngg("gateway2", 2, "192.168.1.101"),
		},
		nodes: []Node{worker("worker1", lan), worker("worker2", lan)},
		want: Result{Assignment: on(
			"192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker1")},
	}, {
		name:     "controller restart: the current placement is kept as is",
		gateways: []Gateway{specGateway},
		nodes:    []Node{worker("worker1", lan), worker("worker2", lan)},
		current:  on("192.168.1.100", "worker2", "192.168.1.101", "worker2", "192.168.1.102", "worker1"),
		want: Result{Assignment: on(
			"192.168.1.100", "worker2", "192.168.1.101", "worker2", "192.168.1.102", "worker1")},
	}, {
		name:     "a new node moves nothing, but takes the next new IP",
		gateways: []Gateway{specGateway, ngg("late", 9, "192.168.1.103")},
		nodes:    []Node{worker("worker0", lan), worker("worker1", lan), worker("worker2", lan)},
		current:  on("192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker1"),
		want: Result{Assignment: on(
			"192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker1",
			"192.168.1.103", "worker0")},
	}, {
		name:     "a node that reports 0.0.0.0/0 (or any prefix shorter than /8) holds nothing by it",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100", "10.1.2.3")},
		nodes:    []Node{worker("aaa-rogue", "0.0.0.0/0", "8.0.0.0/5"), worker("worker1", lan)},
		want: Result{Assignment: on("192.168.1.100", "worker1"),
			Unassigned: on("10.1.2.3", "no node has a subnet containing 10.1.2.3")},
	}, {
		name:     "a floating IP that is a node's reported address is never placed",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.12", "192.168.1.100")},
		nodes:    []Node{worker("worker1", "192.168.1.11/24"), down(worker("worker2", "192.168.1.12/24"))},
		want: Result{Assignment: on("192.168.1.100", "worker1"),
			Unassigned: on("192.168.1.12", "192.168.1.12 is the address of node worker2; a floating IP must be an unused address in the nodes' subnet")},
	}, {
		name:     "a node's address leaves the node that holds it as a floating IP",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.12")},
		nodes:    []Node{worker("worker1", "192.168.1.11/24"), worker("worker2", "192.168.1.12/24")},
		current:  on("192.168.1.12", "worker1"),
		want: Result{
			Unassigned: on("192.168.1.12", "192.168.1.12 is the address of node worker2; a floating IP must be an unused address in the nodes' subnet"),
			Moves:      []Move{{IP: addr("192.168.1.12"), From: "worker1", Reason: MoveNodeAddress}},
		},
	}, {
		name:     "a router a node reports is never placed, and leaves the node that holds it",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.1", "192.168.1.100")},
		nodes:    []Node{worker("worker1", lan), withRouters(worker("worker2", lan), "192.168.1.1")},
		current:  on("192.168.1.1", "worker1"),
		want: Result{Assignment: on("192.168.1.100", "worker1"),
			Unassigned: on("192.168.1.1", "192.168.1.1 is a router on the segment (node worker2 routes through it); a floating IP must be an unused address in the nodes' subnet"),
			Moves:      []Move{{IP: addr("192.168.1.1"), From: "worker1", Reason: MoveRouter}},
		},
	}, {
		name:     "a floating IP that is an address of a Node object is never placed",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.11", "192.168.1.100")},
		nodes:    []Node{withAddresses(worker("worker1", lan), "192.168.1.11"), worker("worker2", lan)},
		want: Result{Assignment: on("192.168.1.100", "worker1"),
			Unassigned: on("192.168.1.11", "192.168.1.11 is the address of node worker1; a floating IP must be an unused address in the nodes' subnet")},
	}, {
		name:     "workers come before an idle control-plane node",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100", "192.168.1.101")},
		nodes:    []Node{controlPlane("aaa-cp", lan), worker("worker1", lan)},
		want:     Result{Assignment: on("192.168.1.100", "worker1", "192.168.1.101", "worker1")},
	}, {
		name:     "a control-plane node is the last resort when no worker has the subnet",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{controlPlane("cp1", lan), worker("worker1", "10.0.0.0/24")},
		want:     Result{Assignment: on("192.168.1.100", "cp1")},
	}, {
		name:     "a control-plane node is the last resort when the worker is down",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{controlPlane("cp1", lan), down(worker("worker1", lan))},
		current:  on("192.168.1.100", "worker1"),
		want: Result{
			Assignment: on("192.168.1.100", "cp1"),
			Moves:      []Move{{IP: addr("192.168.1.100"), From: "worker1", To: "cp1", Reason: MoveNodeDown}},
		},
	}, {
		name:     "an IP on a control-plane node stays when a worker joins",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{controlPlane("cp1", lan), worker("worker1", lan)},
		current:  on("192.168.1.100", "cp1"),
		want:     Result{Assignment: on("192.168.1.100", "cp1")},
	}, {
		name:     "only a node whose subnet contains the IP can take it",
		gateways: []Gateway{ngg("gw", 0, "10.0.0.5", "192.168.1.100")},
		nodes:    []Node{worker("a", lan), worker("b", lan, "10.0.0.0/24")},
		want:     Result{Assignment: on("10.0.0.5", "b", "192.168.1.100", "a")},
	}, {
		name:     "subnets as agents report them, with host bits, still match",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{worker("worker1", "192.168.1.11/24")},
		want:     Result{Assignment: on("192.168.1.100", "worker1")},
	}, {
		name:     "a node with no floating IP comes before one that has one, whatever the name",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100", "192.168.1.101")},
		nodes:    []Node{worker("worker1", lan), worker("worker2", lan)},
		current:  on("192.168.1.100", "worker1"),
		want:     Result{Assignment: on("192.168.1.100", "worker1", "192.168.1.101", "worker2")},
	}, {
		name: "load counts the IPs of every gateway",
		gateways: []Gateway{
			ngg("old", 0, "192.168.1.100", "192.168.1.101"),
			ngg("new", 1, "192.168.1.102"),
		},
		nodes:   []Node{worker("w1", lan), worker("w2", lan), worker("w3", lan)},
		current: on("192.168.1.100", "w1", "192.168.1.101", "w2"),
		want:    Result{Assignment: on("192.168.1.100", "w1", "192.168.1.101", "w2", "192.168.1.102", "w3")},
	}, {
		name:     "a down node's IPs go to the next available nodes, spread",
		gateways: []Gateway{specGateway},
		nodes:    []Node{down(worker("worker1", lan)), worker("worker2", lan), worker("worker3", lan)},
		current:  on("192.168.1.100", "worker1", "192.168.1.101", "worker2", "192.168.1.102", "worker1"),
		want: Result{
			Assignment: on("192.168.1.100", "worker3", "192.168.1.101", "worker2", "192.168.1.102", "worker2"),
			Moves: []Move{
				{IP: addr("192.168.1.100"), From: "worker1", To: "worker3", Reason: MoveNodeDown},
				{IP: addr("192.168.1.102"), From: "worker1", To: "worker2", Reason: MoveNodeDown},
			},
		},
	}, {
		name:     "a down node with no one to take over leaves its IP unassigned",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{down(worker("worker1", lan)), worker("other", "10.0.0.0/24")},
		current:  on("192.168.1.100", "worker1"),
		want: Result{
			Unassigned: on("192.168.1.100", "no Up node has a subnet containing 192.168.1.100 (1 that do are Down)"),
			Moves:      []Move{{IP: addr("192.168.1.100"), From: "worker1", Reason: MoveNodeDown}},
		},
	}, {
		name:     "a cordoned node hands its IP over",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{cordoned(worker("worker1", lan)), worker("worker2", lan)},
		current:  on("192.168.1.100", "worker1"),
		want: Result{
			Assignment: on("192.168.1.100", "worker2"),
			Moves:      []Move{{IP: addr("192.168.1.100"), From: "worker1", To: "worker2", Reason: MoveNodeCordoned}},
		},
	}, {
		name:     "a cordoned node keeps its IP when no other node can take it",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{cordoned(worker("worker1", lan)), down(worker("worker2", lan))},
		current:  on("192.168.1.100", "worker1"),
		want:     Result{Assignment: on("192.168.1.100", "worker1")},
	}, {
		name:     "a cordoned node takes no new IP",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{cordoned(worker("worker1", lan))},
		want:     Result{Unassigned: on("192.168.1.100", "every Up node with a subnet containing 192.168.1.100 is cordoned")},
	}, {
		name:     "an IP leaves a node whose subnet no longer contains it",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{worker("worker1", "10.0.0.0/24"), worker("worker2", lan)},
		current:  on("192.168.1.100", "worker1"),
		want: Result{
			Assignment: on("192.168.1.100", "worker2"),
			Moves:      []Move{{IP: addr("192.168.1.100"), From: "worker1", To: "worker2", Reason: MoveSubnetGone}},
		},
	}, {
		name:     "an IP leaves a node that was deleted",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{worker("worker2", lan)},
		current:  on("192.168.1.100", "worker1"),
		want: Result{
			Assignment: on("192.168.1.100", "worker2"),
			Moves:      []Move{{IP: addr("192.168.1.100"), From: "worker1", To: "worker2", Reason: MoveNodeGone}},
		},
	}, {
		name:     "an IP no gateway lists any more is released",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{worker("worker1", lan)},
		current:  on("192.168.1.100", "worker1", "192.168.1.103", "worker1"),
		want: Result{
			Assignment: on("192.168.1.100", "worker1"),
			Moves:      []Move{{IP: addr("192.168.1.103"), From: "worker1", Reason: MoveIPRemoved}},
		},
	}, {
		name:     "an IP outside every subnet is unassigned and the others are still placed",
		gateways: []Gateway{ngg("gw", 0, "198.51.100.50", "192.168.1.100")},
		nodes:    []Node{worker("worker1", lan)},
		want: Result{
			Assignment: on("192.168.1.100", "worker1"),
			Unassigned: on("198.51.100.50", "no node has a subnet containing 198.51.100.50"),
		},
	}, {
		name:     "an IPv6 address is unassigned, not placed on an IPv6 subnet",
		gateways: []Gateway{ngg("gw", 0, "2001:db8::1")},
		nodes:    []Node{worker("worker1", lan, "2001:db8::/64")},
		want:     Result{Unassigned: on("2001:db8::1", "2001:db8::1 is not an IPv4 address")},
	}, {
		name:     "no nodes at all",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		want:     Result{Unassigned: on("192.168.1.100", "no node has a subnet containing 192.168.1.100")},
	}, {
		name:     "an IP listed twice by one gateway is placed once, without a conflict",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100", "192.168.1.100", "192.168.1.101")},
		nodes:    []Node{worker("worker1", lan), worker("worker2", lan)},
		want:     Result{Assignment: on("192.168.1.100", "worker1", "192.168.1.101", "worker2")},
	}, {
		name:     "a node given twice is merged cautiously: Down in either entry is Down",
		gateways: []Gateway{ngg("gw", 0, "192.168.1.100")},
		nodes:    []Node{worker("worker1", lan), down(worker("worker1", lan)), worker("worker2", lan)},
		current:  on("192.168.1.100", "worker1"),
		want: Result{
			Assignment: on("192.168.1.100", "worker2"),
			Moves:      []Move{{IP: addr("192.168.1.100"), From: "worker1", To: "worker2", Reason: MoveNodeDown}},
		},
	}, {
		name:     "overlapping subnets: a node on the wider one competes for the narrow one's IPs",
		gateways: []Gateway{ngg("gw", 0, "10.0.0.5", "10.0.0.6", "10.0.1.5")},
		nodes:    []Node{worker("narrow", "10.0.0.0/24"), worker("wide", "10.0.0.0/16")},
		want:     Result{Assignment: on("10.0.0.5", "narrow", "10.0.0.6", "wide", "10.0.1.5", "wide")},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Place(Input{Gateways: tt.gateways, Nodes: tt.nodes, Current: tt.current})
			checkResult(t, got, tt.want)
		})
	}
}
