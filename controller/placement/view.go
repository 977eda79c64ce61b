package placement

import "net/netip"

// View is one gateway's share of a Result, shaped like its status.
type View struct {
	// FloatingIPs maps each of the gateway's IPs that is placed to its node:
	// status.floatingIPs.
	FloatingIPs map[netip.Addr]string
	// Standbys maps each of the gateway's placed IPs that has a standby to it:
	// status.standbys.
	Standbys map[netip.Addr]string
	// Nodes maps each node with a subnet containing one of the gateway's IPs to Up or
	// Down: status.nodes. A cordoned node that is Up shows as Up.
	Nodes map[string]NodeState
	// Unplaced maps each of the gateway's IPs that no node holds for it to why: no node can
	// take it, or an older gateway lists it too. The gateway is Ready when this is empty.
	Unplaced map[netip.Addr]string
}

// Views splits r, which Place computed from in, into one View per gateway. IPs that an
// older gateway keeps count as the older gateway's, so they add no nodes to the newer one.
func Views(in Input, r Result) map[GatewayID]View {
	ix := newIndex(in.Nodes)
	c := claimIPs(in.Gateways)
	views := make(map[GatewayID]View, len(c.gateways))
	for gi, g := range c.gateways {
		v := View{
			FloatingIPs: make(map[netip.Addr]string, len(g.FloatingIPs)),
			Nodes:       map[string]NodeState{},
			Unplaced:    make(map[netip.Addr]string),
		}
		for _, ip := range g.FloatingIPs {
			if owner := c.owner[ip]; owner != gi {
				v.Unplaced[ip] = "already used by " + c.gateways[owner].ID.String()
				continue
			}
			if node, ok := r.Assignment[ip]; ok {
				v.FloatingIPs[ip] = node
				if s, ok := r.Standbys[ip]; ok {
					if v.Standbys == nil {
						v.Standbys = make(map[netip.Addr]string, len(g.FloatingIPs))
					}
					v.Standbys[ip] = s
				}
			} else {
				v.Unplaced[ip] = r.Unassigned[ip]
			}
			members := ix.pool(ip).members
			if len(v.Nodes) == 0 {
				// Usually all of a gateway's IPs share a subnet, so this is the final size.
				v.Nodes = make(map[string]NodeState, len(members))
			}
			for _, i := range members {
				n := &ix.nodes[i]
				if n.up {
					v.Nodes[n.name] = NodeUp
				} else {
					v.Nodes[n.name] = NodeDown
				}
			}
		}
		views[g.ID] = v
	}
	return views
}
