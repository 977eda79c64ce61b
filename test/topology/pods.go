package topology

import (
	"errors"
	"fmt"
	"net/netip"
)

// Pod is a pod: a namespace whose eth0 is a veth to its node, with a /32 address and a
// default route through the node (proxy ARP on the node's side, as Calico does).
type Pod struct {
	Name string
	NS   string
	IP   netip.Addr
	Node *Node
	// HostVeth is the node's side of the pod's veth.
	HostVeth string
	// routedBy are the namespaces (other nodes, the router) that route the pod's /32 to
	// its node.
	routedBy []string
}

// AddPod creates a pod on node n with the next free address of its pod subnet.
func (t *Topology) AddPod(n *Node, name string) (*Pod, error) {
	if n.pods >= 240 {
		return nil, fmt.Errorf("node %s has no pod addresses left", n.Name)
	}
	n.pods++
	a := n.PodCIDR.Addr().As4()
	a[3] = byte(9 + n.pods)
	return t.addPod(n, name, netip.AddrFrom4(a))
}

// AddPodAt creates a pod on node n with address ip, which need not be in the node's pod
// subnet: every other node of its rack, and the router, route it to n, as Calico's IPAM
// and routes do.
func (t *Topology) AddPodAt(n *Node, name string, ip netip.Addr) (*Pod, error) {
	p, err := t.addPod(n, name, ip)
	if err != nil {
		return nil, err
	}
	// The nodes of the other rack reach it through the router, which routes it to n.
	var routers []string
	for _, o := range t.Nodes {
		if o != n && o.Rack == n.Rack {
			routers = append(routers, o.NS)
		}
	}
	if t.Racks == 2 {
		routers = append(routers, t.Router)
	}
	for _, ns := range routers {
		if err := ip4route(ns, "add", p.IP, n.IP); err != nil {
			return nil, errors.Join(err, t.RemovePod(p))
		}
		p.routedBy = append(p.routedBy, ns)
	}
	return p, nil
}

func ip4route(ns, op string, dst, via netip.Addr) error {
	return ip("-n", ns, "route", op, netip.PrefixFrom(dst, 32).String(), "via", via.String())
}

func (t *Topology) addPod(n *Node, name string, addr netip.Addr) (*Pod, error) {
	t.podSeq++
	p := &Pod{Name: name, NS: t.ns(fmt.Sprintf("p%d", t.podSeq)), IP: addr, Node: n,
		HostVeth: fmt.Sprintf("veth%d", t.podSeq)}
	if err := t.addNS(p.NS); err != nil {
		return nil, err
	}
	for _, s := range [][]string{
		{"link", "add", "eth0", "netns", p.NS, "type", "veth", "peer", "name", p.HostVeth, "netns", n.NS},
		{"-n", p.NS, "addr", "add", p.IP.String() + "/32", "dev", "eth0"},
		{"-n", p.NS, "link", "set", "eth0", "up"},
		{"-n", p.NS, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"},
		{"-n", p.NS, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"},
		{"-n", n.NS, "link", "set", p.HostVeth, "up"},
		{"-n", n.NS, "route", "add", p.IP.String() + "/32", "dev", p.HostVeth, "scope", "link"},
	} {
		if err := ip(s...); err != nil {
			return nil, fmt.Errorf("pod %s: %w", name, err)
		}
	}
	// Proxy ARP answers at once, not after the default random delay of up to 0.8 s.
	if err := sysctl(n.NS, fmt.Sprintf("net.ipv4.conf.%s.proxy_arp=1", p.HostVeth),
		fmt.Sprintf("net.ipv4.neigh.%s.proxy_delay=0", p.HostVeth)); err != nil {
		return nil, err
	}
	return p, nil
}

// RemovePod deletes the pod's namespace, and with it its veth and the node's route, and
// the other nodes' routes to it.
func (t *Topology) RemovePod(p *Pod) error {
	var errs []error
	for _, o := range p.routedBy {
		errs = append(errs, ip4route(o, "del", p.IP, p.Node.IP))
	}
	p.routedBy = nil
	for i, ns := range t.namespaces {
		if ns == p.NS {
			t.namespaces = append(t.namespaces[:i], t.namespaces[i+1:]...)
			break
		}
	}
	return errors.Join(append(errs, ip("netns", "del", p.NS))...)
}

// Exec runs a command in the pod's namespace.
func (p *Pod) Exec(args ...string) (string, error) { return Exec(p.NS, args...) }
