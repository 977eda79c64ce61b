package topology

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The address plan. Nodes are 198.51.100.(10+i) with pod subnet 198.18.i.0/24; floating
// IPs are for the tests to pick, from 198.51.100.100 up. With a second rack, the segment
// splits in two: rack 1 keeps 198.51.100.0/25 (the router's .1, the control host's .2,
// the nodes and the floating IPs), rack 2 gets 198.51.100.128/25 (the router's .129, its
// nodes at 198.51.100.(138+i), and the host's leg, .254).
var (
	// Segment is every node address: the one segment, or both racks.
	Segment     = netip.MustParsePrefix("198.51.100.0/24")
	Rack1       = netip.MustParsePrefix("198.51.100.0/25")
	Rack2       = netip.MustParsePrefix("198.51.100.128/25")
	Router2IP   = netip.MustParseAddr("198.51.100.129")
	PodSupernet = netip.MustParsePrefix("198.18.0.0/15")
	RouterIP    = netip.MustParseAddr("198.51.100.1")
	ControlIP   = netip.MustParseAddr("198.51.100.2")
	HostIP      = netip.MustParseAddr("198.51.100.254")
	RouterExtIP = netip.MustParseAddr("203.0.113.1")
	ExternalIP  = netip.MustParseAddr("203.0.113.10")
	// ExternalIP2 is a second address of the external host, for "another destination".
	ExternalIP2  = netip.MustParseAddr("203.0.113.20")
	ExternalNet  = netip.MustParsePrefix("203.0.113.0/24")
	maxNodes     = 80
	lockPath     = "/run/egressgw-topology.lock"
	nsNamePrefix = "egw"
)

// Config shapes a topology.
type Config struct {
	// Nodes is how many nodes the segment (rack 1 with a second rack) has; 3 if zero.
	Nodes int
	// Rack2Nodes is how many nodes a second rack has: another L2 segment, which the
	// router joins to the first. None if zero: one segment.
	Rack2Nodes int
	// LockTimeout bounds the wait for another process's topology to go; 15 minutes if zero.
	LockTimeout time.Duration
}

// Topology is a running set of namespaces. Close removes it.
type Topology struct {
	// ID prefixes every namespace name: egw<pid>.
	ID string
	// L2 holds the bridges (br0, and br1 for rack 2); Router, External and Control are
	// hosts on br0.
	L2, Router, Control string
	// Racks is 1, or 2 with a second rack.
	Racks    int
	Nodes    []*Node
	External *External
	// HostLink is the host's veth into the segment, with HostIP on it.
	HostLink string

	namespaces []string
	lock       *os.File
	podSeq     int
}

// Node is a node: a namespace with eth0 on the segment, its pods behind veths.
type Node struct {
	Name    string // node1, node2, ...
	NS      string
	Index   int
	IP      netip.Addr
	MAC     net.HardwareAddr
	PodCIDR netip.Prefix
	// Rack is 1, or 2 for a node of the second rack.
	Rack int
	// BridgePort is the node's port on its rack's bridge, in the L2 namespace.
	BridgePort string
	t          *Topology
	pods       int
}

// New builds a topology. On error everything built so far is removed.
func New(cfg Config) (_ *Topology, err error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 1 || cfg.Rack2Nodes < 0 || cfg.Nodes+cfg.Rack2Nodes > maxNodes {
		return nil, fmt.Errorf("a topology has 1 to %d nodes, not %d and %d", maxNodes, cfg.Nodes, cfg.Rack2Nodes)
	}
	if cfg.LockTimeout == 0 {
		cfg.LockTimeout = 15 * time.Minute
	}
	lock, err := acquire(cfg.LockTimeout)
	if err != nil {
		return nil, err
	}
	pid := os.Getpid()
	t := &Topology{ID: fmt.Sprintf("%s%d", nsNamePrefix, pid), HostLink: fmt.Sprintf("egwh%d", pid), lock: lock, Racks: 1}
	if cfg.Rack2Nodes > 0 {
		t.Racks = 2
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Close())
		}
	}()
	if err := sweep(); err != nil {
		return nil, err
	}
	t.L2, t.Router, t.Control = t.ns("l2"), t.ns("router"), t.ns("cp")
	ext := t.ns("ext")
	for _, ns := range []string{t.L2, t.Router, t.Control, ext} {
		if err := t.addNS(ns); err != nil {
			return nil, err
		}
	}
	if err := t.buildSegment(ext); err != nil {
		return nil, err
	}
	for i := 1; i <= cfg.Nodes+cfg.Rack2Nodes; i++ {
		rack := 1
		if i > cfg.Nodes {
			rack = 2
		}
		n, err := t.addNode(i, rack)
		if err != nil {
			return nil, err
		}
		t.Nodes = append(t.Nodes, n)
	}
	for _, n := range t.Nodes {
		if err := n.routePods(t.Nodes); err != nil {
			return nil, err
		}
		// Across racks, the router routes every pod subnet to its node, as a routed
		// fabric (BGP from the nodes) would.
		if t.Racks == 2 {
			if err := ip("-n", t.Router, "route", "add", n.PodCIDR.String(), "via", n.IP.String()); err != nil {
				return nil, err
			}
		}
	}
	if t.External, err = startExternal(ext); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Topology) ns(role string) string { return t.ID + "-" + role }

func (t *Topology) addNS(name string) error {
	if err := ip("netns", "add", name); err != nil {
		return err
	}
	t.namespaces = append(t.namespaces, name)
	return ip("-n", name, "link", "set", "lo", "up")
}

// buildSegment makes the bridge, the router and its external leg, the control-plane
// host, and the host's own leg into the segment; with a second rack, its bridge too, the
// router's leg into it, and the host's leg there instead.
func (t *Topology) buildSegment(ext string) error {
	bits, hostBridge, hostRoute := 24, "br0", []string(nil)
	if t.Racks == 2 {
		bits, hostBridge = Rack1.Bits(), "br1"
		hostRoute = []string{"route", "add", Rack1.String(), "via", Router2IP.String(), "dev", t.HostLink}
	}
	steps := [][]string{
		{"-n", t.L2, "link", "add", "br0", "type", "bridge"},
		{"-n", t.L2, "link", "set", "br0", "up"},
		{"link", "add", "eth0", "netns", t.Router, "type", "veth", "peer", "name", "router", "netns", t.L2},
		{"link", "add", "eth1", "netns", t.Router, "type", "veth", "peer", "name", "eth0", "netns", ext},
		{"link", "add", "eth0", "netns", t.Control, "type", "veth", "peer", "name", "cp", "netns", t.L2},
		{"link", "add", t.HostLink, "type", "veth", "peer", "name", "host", "netns", t.L2},
		{"-n", t.Router, "addr", "add", fmt.Sprintf("%s/%d", RouterIP, bits), "dev", "eth0"},
		{"-n", t.Router, "addr", "add", RouterExtIP.String() + "/24", "dev", "eth1"},
		{"-n", ext, "addr", "add", ExternalIP.String() + "/24", "dev", "eth0"},
		{"-n", ext, "addr", "add", ExternalIP2.String() + "/24", "dev", "eth0"},
		{"-n", t.Control, "addr", "add", fmt.Sprintf("%s/%d", ControlIP, bits), "dev", "eth0"},
		{"addr", "add", fmt.Sprintf("%s/%d", HostIP, bits), "dev", t.HostLink},
	}
	ports := map[string]string{"router": "br0", "cp": "br0", "host": hostBridge}
	if t.Racks == 2 {
		steps = append(steps,
			[]string{"-n", t.L2, "link", "add", "br1", "type", "bridge"},
			[]string{"-n", t.L2, "link", "set", "br1", "up"},
			[]string{"link", "add", "eth2", "netns", t.Router, "type", "veth", "peer", "name", "router2", "netns", t.L2},
			[]string{"-n", t.Router, "addr", "add", fmt.Sprintf("%s/%d", Router2IP, Rack2.Bits()), "dev", "eth2"},
			[]string{"-n", t.Router, "link", "set", "eth2", "up"},
		)
		ports["router2"] = "br1"
	}
	for _, port := range []string{"router", "router2", "cp", "host"} {
		if br, ok := ports[port]; ok {
			steps = append(steps, []string{"-n", t.L2, "link", "set", port, "master", br, "up"})
		}
	}
	steps = append(steps,
		[]string{"-n", t.Router, "link", "set", "eth0", "up"},
		[]string{"-n", t.Router, "link", "set", "eth1", "up"},
		[]string{"-n", ext, "link", "set", "eth0", "up"},
		[]string{"-n", ext, "route", "add", "default", "via", RouterExtIP.String()},
		[]string{"-n", t.Control, "link", "set", "eth0", "up"},
		[]string{"link", "set", t.HostLink, "up"},
	)
	if t.Racks == 2 {
		// The control host and the host reach the other rack through the router.
		steps = append(steps, []string{"-n", t.Control, "route", "add", Rack2.String(), "via", RouterIP.String()}, hostRoute)
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	// accept_local: an ICMP error the router sends about a SNATed flow (frag-needed, from
	// its own address) comes back to it, translated by the gateway, on its way to a pod of
	// the other rack. Linux drops a forwarded packet from one of its own addresses as a
	// martian unless told otherwise; routers of other makes forward it.
	return sysctl(t.Router, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.accept_local=1", "net.ipv4.conf.default.accept_local=1")
}

func (t *Topology) addNode(i, rack int) (*Node, error) {
	n := &Node{
		Name: fmt.Sprintf("node%d", i), NS: t.ns(fmt.Sprintf("node%d", i)), Index: i, Rack: rack,
		IP:         netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}),
		PodCIDR:    netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24),
		BridgePort: fmt.Sprintf("n%d", i),
		t:          t,
	}
	bits, bridge, router := 24, "br0", RouterIP
	if t.Racks == 2 {
		bits = Rack1.Bits()
	}
	if rack == 2 {
		n.IP = netip.AddrFrom4([4]byte{198, 51, 100, byte(138 + i)})
		bridge, router = "br1", Router2IP
	}
	if err := t.addNS(n.NS); err != nil {
		return nil, err
	}
	for _, s := range [][]string{
		{"link", "add", "eth0", "netns", n.NS, "type", "veth", "peer", "name", n.BridgePort, "netns", t.L2},
		{"-n", t.L2, "link", "set", n.BridgePort, "master", bridge, "up"},
		{"-n", n.NS, "addr", "add", fmt.Sprintf("%s/%d", n.IP, bits), "dev", "eth0"},
		{"-n", n.NS, "link", "set", "eth0", "up"},
		{"-n", n.NS, "route", "add", "default", "via", router.String()},
	} {
		if err := ip(s...); err != nil {
			return nil, err
		}
	}
	// Strict reverse-path filtering, as many distributions set it: the dataplane must
	// work with it.
	if err := sysctl(n.NS, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1"); err != nil {
		return nil, err
	}
	mac, err := Exec(n.NS, "cat", "/sys/class/net/eth0/address")
	if err != nil {
		return nil, err
	}
	if n.MAC, err = net.ParseMAC(strings.TrimSpace(mac)); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return n, Nft(n.NS, cniTable())
}

// routePods routes every other node's pod subnet on the node's own segment to that node,
// as a plain CNI does; those of the other rack go by the default route, to the router.
func (n *Node) routePods(nodes []*Node) error {
	for _, o := range nodes {
		if o == n || o.Rack != n.Rack {
			continue
		}
		if err := ip("-n", n.NS, "route", "add", o.PodCIDR.String(), "via", o.IP.String()); err != nil {
			return err
		}
	}
	return nil
}

// cniTable is what a plain nftables CNI puts on a node: network policy in the forward
// hook, and masquerade of pod traffic that leaves the cluster. The masquerade does not
// look at the output device, as many CNIs' rules do not, so that a steered packet is
// saved from it only by the node agent's own rules.
func cniTable() string {
	return fmt.Sprintf(`table ip cni {
	chain netpol {
		type filter hook forward priority filter; policy accept;
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[1]s ip daddr != { %[1]s, %[2]s } counter masquerade
	}
}
`, PodSupernet, Segment)
}

// DenyEgress drops, in the node's network-policy chain, what the pod sends to prefix:
// what an nftables CNI does for an egress NetworkPolicy.
func (n *Node) DenyEgress(pod netip.Addr, prefix netip.Prefix) error {
	return Nft(n.NS, fmt.Sprintf("add rule ip cni netpol ip saddr %s ip daddr %s counter drop\n", pod, prefix))
}

// ClearPolicy removes every network-policy rule of the node.
func (n *Node) ClearPolicy() error { return Nft(n.NS, "flush chain ip cni netpol\n") }

// SetLink takes the node's port on the segment up or down, as a pulled cable does.
func (n *Node) SetLink(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return ip("-n", n.t.L2, "link", "set", n.BridgePort, state)
}

// Exec runs a command in the node's namespace.
func (n *Node) Exec(args ...string) (string, error) { return Exec(n.NS, args...) }

// Close stops the external servers and deletes every namespace, and with them every
// veth, the host's leg included.
func (t *Topology) Close() error {
	var errs []error
	if t.External != nil {
		t.External.close()
	}
	for i := len(t.namespaces) - 1; i >= 0; i-- {
		if err := ip("netns", "del", t.namespaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	t.namespaces = nil
	// Deleting the control namespace deletes the host link's peer, and with it the host
	// link, asynchronously: it may be gone by now.
	if _, err := net.InterfaceByName(t.HostLink); err == nil {
		if err := ip("link", "del", t.HostLink); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	if t.lock != nil {
		_ = t.lock.Close() // releases the flock
		t.lock = nil
	}
	return errors.Join(errs...)
}

// acquire takes the machine-wide topology lock, waiting at most timeout.
func acquire(timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", lockPath, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another topology holds %s (waited %s): %w", lockPath, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var staleName = regexp.MustCompile(`^egwh?(\d+)(-|$)`)

// sweep deletes the namespaces and host links of topologies whose process is gone.
func sweep() error {
	var errs []error
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range entries {
		if deadOwner(e.Name()) {
			errs = append(errs, ip("netns", "del", e.Name()))
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, "egwh") && deadOwner(i.Name) {
			errs = append(errs, ip("link", "del", i.Name))
		}
	}
	return errors.Join(errs...)
}

func deadOwner(name string) bool {
	m := staleName.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil || pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
