package routing

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// nthAddr is the n-th address from first.
func nthAddr(first string, n int) netip.Addr {
	a := netip.MustParseAddr(first).As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// egressPolicies are n ready policies that all select alice's frontend pods, policy i
// sending 100.64.0.0+i/32 through egress IP 100.100.0.0+i.
func egressPolicies(n int) (*Policies, map[string]string) {
	objs := make([]*v1.EgressNATPolicy, n)
	ips, holders := map[string]string{}, map[string]string{}
	for i := range n {
		name := fmt.Sprintf("p%05d", i)
		objs[i] = policy(name, i, []string{nthAddr("100.64.0.0", i).String() + "/32"}, [2]string{"user=alice", "role=frontend"})
		ip := nthAddr("100.100.0.0", i).String()
		ips[name], holders[ip] = ip, "worker2"
	}
	return Compile(objs, resolver(ips, holders)), ips
}

// verdictTo is what tbl does with pod's packets to dst: "pass", a verdict, or the egress IP.
func verdictTo(tbl Table, pod netip.Addr, dst netip.Addr) string {
	set, ok := tbl.Pods[pod]
	if !ok {
		set = UnknownSet
	}
	var best *TableRoute
	for i, r := range tbl.Sets[set] {
		if r.Prefix.Contains(dst) && (best == nil || r.Prefix.Bits() > best.Prefix.Bits()) {
			best = &tbl.Sets[set][i]
		}
	}
	switch {
	case best == nil:
		return "pass"
	case best.Verdict == SNAT:
		return tbl.Egress[best.EgressID].String()
	}
	return best.Verdict.String()
}

// TestTableEgressIDsAtLimit: the egress id space at its real size, 4095 (the packet
// mark's 12 bits). A node whose pods steer to more egress IPs gets a table anyway: the
// IPs that have ids keep them, the rest are refused with a CapacityError naming the
// space and its limit, and their routes Drop (never pass: the traffic must not leave
// with the node IP). When IPs go, the refused ones get ids in the same build.
func TestTableEgressIDsAtLimit(t *testing.T) {
	alice := map[string]string{"user": "alice"}
	fe := localPod("fe", "198.18.1.10", alice, "role", "frontend")
	b := NewTableBuilder()
	ps, _ := egressPolicies(MaxEgressIDs)
	full, err := b.Build(ps, []LocalPod{fe}, cluster)
	if err != nil || len(full.Refused) != 0 || len(full.Egress) != MaxEgressIDs {
		t.Fatalf("Build(%d egress IPs) = %d ids, refused %v, err %v; want all numbered", MaxEgressIDs, len(full.Egress), full.Refused, err)
	}
	ids := map[netip.Addr]uint32{}
	for id, ip := range full.Egress {
		ids[ip] = id
	}

	// Five more: the IPs held keep their ids; the five new are refused and drop.
	over, _ := egressPolicies(MaxEgressIDs + 5)
	tbl, err := b.Build(over, []LocalPod{fe}, cluster)
	if err != nil {
		t.Fatalf("Build(%d egress IPs): %v; want a table with the excess refused", MaxEgressIDs+5, err)
	}
	if len(tbl.Refused) != 1 || tbl.Refused[0].Map != "egress ids" || tbl.Refused[0].Limit != MaxEgressIDs || len(tbl.Refused[0].Refused) != 5 {
		t.Fatalf("refused %v, want one CapacityError of the egress ids, limit %d, 5 refused", tbl.Refused, MaxEgressIDs)
	}
	for id, ip := range tbl.Egress {
		if ids[ip] != id {
			t.Errorf("egress IP %s moved from id %d to %d", ip, ids[ip], id)
		}
	}
	for _, tt := range []struct {
		name string
		n    int
		want string
	}{
		{name: "an IP held steers", n: 7, want: nthAddr("100.100.0.0", 7).String()},
		{name: "a refused IP drops", n: MaxEgressIDs + 2, want: "Drop"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := verdictTo(tbl, fe.IP, nthAddr("100.64.0.0", tt.n)); got != tt.want {
				t.Errorf("alice/fe to %s: %s, want %s", nthAddr("100.64.0.0", tt.n), got, tt.want)
			}
		})
	}

	// Ten policies go: the five refused take their ids now, not a build later.
	fewer, ips := egressPolicies(MaxEgressIDs + 5)
	kept := slices.DeleteFunc(slices.Clone(fewer.items), func(p *Policy) bool {
		i, _ := strconv.Atoi(p.Name[1:])
		return i < 10
	})
	fewer.items = kept
	tbl, err = b.Build(fewer, []LocalPod{fe}, cluster)
	if err != nil || len(tbl.Refused) != 0 || len(tbl.Egress) != MaxEgressIDs-5 {
		t.Fatalf("after ten went: %d ids, refused %v, err %v; want %d, none refused", len(tbl.Egress), tbl.Refused, err, MaxEgressIDs-5)
	}
	if got := verdictTo(tbl, fe.IP, nthAddr("100.64.0.0", MaxEgressIDs+2)); got != ips[fmt.Sprintf("p%05d", MaxEgressIDs+2)] {
		t.Errorf("the once-refused IP: %s, want it steered", got)
	}
}

// TestTableSetIDsAtLimit: the set id space at its real size, 65,535 (with the unknown
// set, egw_set_routes' 65,536 slots). 2^16 pods, each selected by another subset of 16
// policies, need one set more: the pod refused stays in the unknown set (its policy
// destinations drop), with a CapacityError naming the space; every other pod has its set.
func TestTableSetIDsAtLimit(t *testing.T) {
	const bits = 16
	alice := map[string]string{"user": "alice"}
	objs := make([]*v1.EgressNATPolicy, bits)
	ips, holders := map[string]string{}, map[string]string{}
	for k := range bits {
		name := fmt.Sprintf("b%02d", k)
		objs[k] = policy(name, k, []string{nthAddr("100.64.0.0", k).String() + "/32"}, [2]string{"user=alice", name + "=1"})
		ip := nthAddr("100.100.0.0", k).String()
		ips[name], holders[ip] = ip, "worker2"
	}
	pods := make([]LocalPod, 1<<bits)
	for i := range pods {
		var labels []string
		for k := range bits {
			if i&(1<<k) != 0 {
				labels = append(labels, fmt.Sprintf("b%02d", k), "1")
			}
		}
		pods[i] = localPod("pod"+strconv.Itoa(i), nthAddr("198.18.0.0", i).String(), alice, labels...)
	}
	tbl, err := NewTableBuilder().Build(Compile(objs, resolver(ips, holders)), pods, cluster)
	if err != nil {
		t.Fatalf("Build(%d sets): %v; want a table with the excess refused", len(pods), err)
	}
	if len(tbl.Refused) != 1 || tbl.Refused[0].Map != "set ids" || tbl.Refused[0].Limit != MaxSets || len(tbl.Refused[0].Refused) != 1 {
		t.Fatalf("refused %v, want one CapacityError of the set ids, limit %d, 1 refused", tbl.Refused, MaxSets)
	}
	if len(tbl.Pods) != MaxSets || len(tbl.Sets) != MaxSets+1 {
		t.Errorf("%d pods in %d sets, want %d in %d", len(tbl.Pods), len(tbl.Sets), MaxSets, MaxSets+1)
	}
	last := pods[len(pods)-1] // selected by all 16
	if got := verdictTo(tbl, last.IP, nthAddr("100.64.0.0", 3)); got != "Drop" {
		t.Errorf("the refused pod %s to a policy destination: %s, want Drop", last.Name, got)
	}
	if got := verdictTo(tbl, pods[8].IP, nthAddr("100.64.0.0", 3)); got != ips["b03"] {
		t.Errorf("pod %s to its destination: %s, want %s", pods[8].Name, got, ips["b03"])
	}
}
