package controller

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/controller/placement"
)

// A grant is a floating IP in a node's NetworkGatewayNode spec. The node's agent holds a
// granted IP only while its own heartbeat is fresh on its own monotonic clock, so a node
// that is Down here has surely dropped everything. A node that is Up may still hold an
// IP that is in its spec, that its status says it holds, or that an older spec granted
// and it has not caught up with: its status is behind its generation, and the gateway's
// status still shows the IP on it, as it does until a handover completes. An IP is
// granted to its new node only when no other Up node may still hold it: an IP is never
// on two nodes at once, even on a planned move such as a cordon.

// grantNode is what the grants need to know about one node.
type grantNode struct {
	obj        *v1.NetworkGatewayNode // the cache's own object: never changed
	up         bool
	spec, held map[netip.Addr]bool
	shown      map[netip.Addr]bool // where the gateways' status places IPs now
}

func (n *grantNode) mayHold(ip netip.Addr) bool {
	behind := n.obj.Status.ObservedGeneration < n.obj.Generation
	return n.up && (n.spec[ip] || n.held[ip] || behind && n.shown[ip])
}

// grantPlan is the outcome of one pass: each node's next spec, who holds each IP once
// it is written, and which moves wait for the old node to let go.
type grantPlan struct {
	specs map[string][]netip.Addr
	// effective is where each IP is (or will be, once specs are written). During a
	// handover it is still the old node.
	effective map[netip.Addr]string
	waiting   int
}

func planGrants(assignment map[netip.Addr]string, nodes map[string]*grantNode) grantPlan {
	plan := grantPlan{specs: map[string][]netip.Addr{}, effective: make(map[netip.Addr]string, len(assignment))}
	next := map[string]map[netip.Addr]bool{}
	for name := range nodes {
		next[name] = map[netip.Addr]bool{}
	}
	mayHold := mayHoldIndex(nodes)
	for ip, target := range assignment {
		if blocker := blockerOf(ip, target, mayHold[ip], nodes); blocker != "" {
			// Take it away first; grant it once the blocker's status says it let go.
			plan.effective[ip] = blocker
			plan.waiting++
			continue
		}
		if next[target] != nil {
			next[target][ip] = true
			plan.effective[ip] = target
		}
	}
	for name, ips := range next {
		plan.specs[name] = slices.SortedFunc(maps.Keys(ips), netip.Addr.Compare)
	}
	return plan
}

// mayHoldIndex lists, for each IP, the nodes that may hold it: one pass over the nodes
// rather than one per IP.
func mayHoldIndex(nodes map[string]*grantNode) map[netip.Addr][]string {
	index := map[netip.Addr][]string{}
	for name, n := range nodes {
		if !n.up {
			continue
		}
		seen := map[netip.Addr]bool{}
		for _, set := range []map[netip.Addr]bool{n.spec, n.held, n.shown} {
			for ip := range set {
				if !seen[ip] && n.mayHold(ip) {
					seen[ip] = true
					index[ip] = append(index[ip], name)
				}
			}
		}
	}
	return index
}

// blockerOf names a node other than target, among those that may hold ip, that may still
// hold it: one that says it holds it if there is one, else the first by name.
func blockerOf(ip netip.Addr, target string, mayHold []string, nodes map[string]*grantNode) string {
	var blockers []string
	for _, name := range mayHold {
		if name != target {
			blockers = append(blockers, name)
		}
	}
	slices.SortFunc(blockers, func(a, b string) int {
		if ha, hb := nodes[a].held[ip], nodes[b].held[ip]; ha != hb {
			if ha {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	if len(blockers) == 0 {
		return ""
	}
	return blockers[0]
}

// grantNodes joins the node reports with liveness. The reports of lapsed nodes claim
// nothing (noteLapsed says why), and neither does the status showing IPs on them.
func grantNodes(reports []v1.NetworkGatewayNode, up, lapsed map[string]bool, current map[netip.Addr]string) map[string]*grantNode {
	out := make(map[string]*grantNode, len(reports))
	for i := range reports {
		obj := &reports[i]
		n := &grantNode{obj: obj, up: up[obj.Name], spec: map[netip.Addr]bool{}, held: map[netip.Addr]bool{}, shown: map[netip.Addr]bool{}}
		for _, s := range obj.Spec.FloatingIPs {
			if ip, err := netip.ParseAddr(s); err == nil {
				n.spec[ip] = true
			}
		}
		if !lapsed[obj.Name] {
			for _, s := range obj.Status.FloatingIPs {
				if ip, err := netip.ParseAddr(s); err == nil {
					n.held[ip] = true
				}
			}
		}
		out[obj.Name] = n
	}
	for ip, node := range current {
		if n := out[node]; n != nil && !lapsed[node] {
			n.shown[ip] = true
		}
	}
	return out
}

// grantWrite is one node spec to write: the cache's object, which the patch is computed
// from (and locked to), and the floating IPs it is to grant.
type grantWrite struct {
	obj  *v1.NetworkGatewayNode
	want []string
}

// grantWrites lists every node spec that changes: first those that lose IPs, then those
// that gain some, so a spec never grants an IP another spec still grants.
func grantWrites(nodes map[string]*grantNode, plan grantPlan) []grantWrite {
	type write struct {
		grantWrite
		shrink bool
	}
	var writes []write
	for name, ips := range plan.specs {
		n := nodes[name]
		want := make([]string, len(ips))
		for i, ip := range ips {
			want[i] = ip.String()
		}
		if slices.Equal(want, n.obj.Spec.FloatingIPs) || len(want) == 0 && len(n.obj.Spec.FloatingIPs) == 0 {
			continue
		}
		shrink := slices.ContainsFunc(n.obj.Spec.FloatingIPs, func(ip string) bool { return !slices.Contains(want, ip) })
		writes = append(writes, write{grantWrite{n.obj, want}, shrink})
	}
	slices.SortFunc(writes, func(a, b write) int {
		if a.shrink != b.shrink {
			if a.shrink {
				return -1
			}
			return 1
		}
		return strings.Compare(a.obj.Name, b.obj.Name)
	})
	out := make([]grantWrite, len(writes))
	for i, w := range writes {
		out[i] = w.grantWrite
	}
	return out
}

// effectiveResult is placement's result as it stands once the grants are written: moves
// that wait for a handover have not happened yet.
func effectiveResult(result placement.Result, plan grantPlan) placement.Result {
	out := result
	out.Assignment = plan.effective
	// An IP waiting for its old node to let go has its target as its standby: that is
	// where it goes next, and the node the old one hands its connections to. (Placement
	// named the standby of the target, which is the target's own next node.)
	out.Standbys = maps.Clone(result.Standbys)
	for ip, target := range result.Assignment {
		if from, ok := plan.effective[ip]; ok && from != target {
			out.Standbys[ip] = target
		}
	}
	out.Moves = nil
	for _, m := range result.Moves {
		if m.To == "" || plan.effective[m.IP] == m.To {
			out.Moves = append(out.Moves, m)
		}
	}
	return out
}
