package bpf

import (
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// classifyTable is the table the program tests run against: two ready policies with
// their own egress IPs, one that no node holds, and three local pods.
func classifyTable(t *testing.T) routing.Table {
	ps := compile(
		pol{name: "web", age: 30, dests: []string{"203.0.113.0/25"}, egressIP: "198.51.100.100"},
		pol{name: "db", age: 20, dests: []string{"203.0.113.128/26"}, egressIP: "198.51.100.101"},
		pol{name: "down", age: 10, dests: []string{"203.0.113.192/26"}},
	)
	return build(t, routing.NewTableBuilder(), ps,
		pod("198.18.1.10", "web", "down"),
		pod("198.18.1.11", "db"),
		pod("198.18.1.12"),
	)
}

// TestFromPod runs egw_from_pod on every verdict path. BPF_PROG_TEST_RUN refuses an
// IPv4 frame too short for its header, so TestVeth sends one over a real veth.
func TestFromPod(t *testing.T) {
	d := load(t)
	tbl := classifyTable(t)
	if err := d.Sync(tbl); err != nil {
		t.Fatal(err)
	}
	// 198.18.9.9 may send from its veth, but the agent has not put it in a set yet.
	allowSources(t, d, netip.MustParseAddr("198.18.9.9"))
	allowPods(t, d, tbl)
	web := egressIDOf(t, tbl, "198.51.100.100")
	db := egressIDOf(t, tbl, "198.51.100.101")

	tests := []struct {
		name     string
		pkt      []byte
		mark     uint32
		wantRet  uint32
		wantMark uint32 // checked unless the packet is dropped
		wantStat string
	}{
		{name: "IPv6 passes untouched", pkt: ipv6Packet(), mark: 0x1234,
			wantRet: retNext, wantMark: 0x1234, wantStat: "from_pod_not_ipv4"},
		{name: "ARP passes untouched", pkt: arpPacket(1, netip.MustParseAddr("198.18.1.10")), mark: 0x1234,
			wantRet: retNext, wantMark: 0x1234, wantStat: "from_pod_not_ipv4"},
		{name: "TCP to a policy destination is steered to its egress id", pkt: ipv4Packet("198.18.1.10", "203.0.113.5", protoTCP), mark: 0x1234,
			wantRet: retNext, wantMark: markSteer | web<<16 | 0x1234, wantStat: "from_pod_steer"},
		{name: "UDP of another policy's pod goes to that policy's egress id", pkt: ipv4Packet("198.18.1.11", "203.0.113.130", protoUDP),
			wantRet: retNext, wantMark: markSteer | db<<16, wantStat: "from_pod_steer"},
		{name: "ICMP is steered too", pkt: ipv4Packet("198.18.1.10", "203.0.113.100", protoICMP),
			wantRet: retNext, wantMark: markSteer | web<<16, wantStat: "from_pod_steer"},
		{name: "our old upper bits are replaced, the lower 16 kept", pkt: ipv4Packet("198.18.1.10", "203.0.113.5", protoTCP), mark: 0xABCD5678,
			wantRet: retNext, wantMark: markSteer | web<<16 | 0x5678, wantStat: "from_pod_steer"},
		{name: "in-cluster traffic is classified, not steered", pkt: ipv4Packet("198.18.1.10", "198.18.2.20", protoTCP), mark: 0x1234,
			wantRet: retNext, wantMark: markClassified | 0x1234, wantStat: "from_pod_in_cluster"},
		{name: "a selected pod's other traffic passes", pkt: ipv4Packet("198.18.1.10", "198.19.0.1", protoUDP),
			wantRet: retNext, wantMark: markClassified, wantStat: "from_pod_pass"},
		{name: "an unselected pod passes to a policy destination", pkt: ipv4Packet("198.18.1.12", "203.0.113.5", protoTCP),
			wantRet: retNext, wantMark: markClassified, wantStat: "from_pod_pass"},
		{name: "a policy whose egress IP no node holds drops", pkt: ipv4Packet("198.18.1.10", "203.0.113.200", protoTCP),
			wantRet: retDrop, wantStat: "from_pod_drop_policy"},
		{name: "an unknown pod to a policy destination drops", pkt: ipv4Packet("198.18.9.9", "203.0.113.5", protoTCP),
			wantRet: retDrop, wantStat: "from_pod_drop_unknown_pod"},
		{name: "an unknown pod to another destination passes", pkt: ipv4Packet("198.18.9.9", "198.19.0.1", protoUDP),
			wantRet: retNext, wantMark: markClassified, wantStat: "from_pod_unknown_pod_pass"},
		{name: "an unknown pod in the cluster is classified", pkt: ipv4Packet("198.18.9.9", "198.51.100.7", protoTCP),
			wantRet: retNext, wantMark: markClassified, wantStat: "from_pod_in_cluster"},
		{name: "a source the veth may not send from drops before classification", pkt: ipv4Packet("198.18.1.13", "203.0.113.5", protoTCP), mark: 0x1234,
			wantRet: retDrop, wantStat: "from_pod_drop_spoofed"},
		{name: "so does one to a destination no policy has", pkt: ipv4Packet("198.18.1.13", "198.19.0.1", protoUDP),
			wantRet: retDrop, wantStat: "from_pod_drop_spoofed"},
		{name: "and one with the node's source", pkt: ipv4Packet("198.51.100.11", "203.0.113.5", protoUDP),
			wantRet: retDrop, wantStat: "from_pod_drop_spoofed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ret, mark uint32
			delta := statsDelta(t, d, func() { ret, mark = run(t, d.objs.EgwFromPod, tt.pkt, tt.mark) })
			if ret != tt.wantRet {
				t.Errorf("returned %#x, want %#x", ret, tt.wantRet)
			}
			if tt.wantRet != retDrop && mark != tt.wantMark {
				t.Errorf("mark %#08x, want %#08x", mark, tt.wantMark)
			}
			if want := map[string]uint64{tt.wantStat: 1}; !maps.Equal(delta, want) {
				t.Errorf("counters moved %v, want %v", delta, want)
			}
		})
	}
}

// TestFromPodOnTheGateway: a pod on the node that holds its egress IP is SNATed there,
// without leaving the node, while the grant is valid; without a valid grant it is steered.
func TestFromPodOnTheGateway(t *testing.T) {
	d := load(t)
	tbl := classifyTable(t)
	if err := d.Sync(tbl); err != nil {
		t.Fatal(err)
	}
	allowPods(t, d, tbl)
	db := egressIDOf(t, tbl, "198.51.100.101")
	pkt := ipv4Packet("198.18.1.11", "203.0.113.130", protoUDP)
	tests := []struct {
		name     string
		expires  time.Duration // from now; 0: no grant
		wantMark uint32
		wantStat string
	}{
		{name: "a valid grant: SNAT here with its id", expires: time.Hour, wantMark: markSNAT | 9<<16, wantStat: "from_pod_local_snat"},
		{name: "an expired grant: steered", expires: -time.Second, wantMark: markSteer | db<<16, wantStat: "from_pod_steer"},
		{name: "no grant: steered", wantMark: markSteer | db<<16, wantStat: "from_pod_steer"},
	}
	ip := netip.MustParseAddr("198.51.100.101")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.expires != 0 {
				if err := d.SetGrant(ip, 9, monotonicNow()+tt.expires); err != nil {
					t.Fatal(err)
				}
			} else if err := d.DeleteGrant(ip); err != nil {
				t.Fatal(err)
			}
			var ret, mark uint32
			delta := statsDelta(t, d, func() { ret, mark = run(t, d.objs.EgwFromPod, pkt, 0) })
			if ret != retNext || mark != tt.wantMark {
				t.Errorf("returned %#x with mark %#08x, want %#x with %#08x", ret, mark, retNext, tt.wantMark)
			}
			if want := map[string]uint64{tt.wantStat: 1}; !maps.Equal(delta, want) {
				t.Errorf("counters moved %v, want %v", delta, want)
			}
		})
	}
}
