package realnodes

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// TestBridgeAndRackOnRealNodes runs the product on the other cells of the matrix that
// TestInstallOnRealNodes (ptp, one segment) leaves: three real nodes whose pods hang on
// a bridge (Debian's bridge plugin: cni0, the subnet's gateway on it, br_netfilter on),
// node1 and node2 on the floating IPs' segment, node3 on a second rack behind the router.
// Selected pods stream UDP to the external host from the gateway node itself, from the
// other node of its rack, and from the other rack (the routed way); every datagram
// arrives with the egress IP. Then the gateway node is cordoned: the egress IP moves to
// the other rack-1 node, whose own pod is now on the gateway (the case a program on cni0
// got wrong: br_netfilter's conntrack met the packet before it was marked), and every
// stream carries on with the egress IP, none leaking. The views tell the paths apart.
func TestBridgeAndRackOnRealNodes(t *testing.T) {
	need(t)
	ctx := context.Background()
	base, err := ImageTarballs()
	if err != nil {
		t.Fatal(err)
	}
	product, err := InstallTarballs()
	if err != nil {
		t.Fatal(err)
	}
	l := startClusterWith(ctx, t, LocalOptions{Nodes: 2, Rack2Nodes: 1, CNI: Bridge}, append(base, product...))
	kubectl := kubectlFor(t, l.CP)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range l.Nodes {
			for _, cmd := range []string{"ip rule", "ip route show table 2642", "ip route", "ip -d link show cni0", "bridge fdb show br cni0", "ip neigh show dev cni0", "nft list table ip egressgw", "conntrack -L"} {
				out, err := topology.Exec(n.NS, strings.Fields(cmd)...)
				t.Logf("%s: %s:\n%s%v", n.Name, cmd, out, err)
			}
		}
		for _, args := range [][]string{{"get", "ngn", "-n", "kube-system", "-o", "yaml"}, {"get", "podegresses", "-n", "streams", "-o", "yaml"}, {"get", "pods", "-A", "-o", "wide"}} {
			out, err := l.CP.Kubectl(nil, args...)
			t.Logf("kubectl %s:\n%s%v", strings.Join(args, " "), out, err)
		}
	})
	dir := t.TempDir()
	if err := WriteOverlay(dir, controlplane.ServiceCIDR, topology.PodSupernet.String()); err != nil {
		t.Fatal(err)
	}
	if err := Install(ctx, l.CP, dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	egressIP := netip.MustParseAddr("198.51.100.100")
	kubectl([]byte(gatewayManifest("install-good", egressIP.String())), "apply", "-f", "-")
	kubectl([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: streams, labels: {user: alice}}\n"), "apply", "-f", "-")
	kubectl([]byte(alicePolicy), "apply", "-f", "-")

	gw := waitGatewayNode(t, l, "", time.Minute)
	other := otherNode(t, l, gw) // the other node of rack 1: nodes are listed rack 1 first
	rack2 := l.Nodes[len(l.Nodes)-1]
	if l.node(other).Rack != 1 || rack2.Rack != 2 {
		t.Fatalf("the gateway %s's rack-1 peer is %s (rack %d), the last node %s (rack %d)", gw, other, l.node(other).Rack, rack2.Name, rack2.Rack)
	}
	streams := map[string]string{"on-gateway": gw, "rack1": other, "rack2": rack2.Name}
	for name, node := range streams {
		stop := startStreamer(t, l, name, node, egressIP)
		defer stop()
	}
	pe := kubectl(nil, "get", "podegresses", "-n", "streams", "-o", `jsonpath={range .items[*]}{.metadata.name}={.routes[0].path}/{.routes[0].overheadBytes} {end}`)
	t.Logf("the streams' paths: %s", pe)
	for _, want := range []string{"rack2=Routed/20", "rack1=OnSegment/", "on-gateway=OnSegment/"} {
		if !strings.Contains(pe, want) {
			t.Errorf("kubectl get podegresses says %q, want %s among them", pe, want)
		}
	}

	mark, from := l.Topo.External.Mark(), time.Now()
	kubectl(nil, "cordon", gw)
	t.Cleanup(func() { _, _ = l.CP.Kubectl(nil, "uncordon", gw) })
	moved := waitGatewayNode(t, l, gw, time.Minute)
	if moved != other {
		t.Fatalf("cordoned %s: the egress IP went to %s, not %s", gw, moved, other)
	}
	movedAfter := time.Since(from)
	time.Sleep(3 * time.Second)
	packets := l.Topo.External.PacketsSince(mark, nil)
	for name, node := range streams {
		st := analyze(packets, name, egressIP, from, time.Now())
		t.Logf("cordoned %s, the egress IP on %s after %s; the stream from %s on %s: %s", gw, moved, movedAfter.Round(time.Millisecond), name, node, st)
		st.check(t)
	}
}
