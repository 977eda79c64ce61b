package realnodes

import (
	"context"
	"fmt"
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
// arrives with the egress IP. The rack-2 pod also reaches it over TCP, moves 16 MiB each
// way, pings it, and learns a smaller MTU on the way from the router's frag-needed. Then the gateway node is cordoned: the egress IP moves to
// the other rack-1 node, whose own pod is now on the gateway (the case a program on cni0
// got wrong: br_netfilter's conntrack met the packet before it was marked), and every
// stream carries on with the egress IP, none leaking. Then that node fails hard, and the
// IP goes back. The views tell the paths apart.
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

	// The rack-2 pod, bridged and routed: TCP, 16 MiB each way, ICMP, and frag-needed from
	// the router, with kubectl exec in its pod.
	t.Run("rack2: TCP, 16 MiB each way, ICMP, frag-needed", func(t *testing.T) {
		target := fmt.Sprintf("%s:%d", topology.ExternalIP, topology.ServicePort)
		client := func(args ...string) string {
			return kubectl(nil, append([]string{"-n", "streams", "exec", "rack2", "--", "/usr/local/bin/egressgw-testclient"}, args...)...)
		}
		if got := strings.TrimSpace(client("who", target)); !strings.HasPrefix(got, egressIP.String()+":") {
			t.Errorf("TCP: the external host saw %q, want %s", got, egressIP)
		}
		if got := strings.Fields(client("transfer", "-size", "16777216", target)); len(got) != 3 || !strings.HasPrefix(got[0], egressIP.String()+":") || got[1] != "16777216" || got[2] != "16777216" {
			t.Errorf("16 MiB each way: %q, want the egress IP, 16777216 up and 16777216 down", got)
		}
		mark := l.Topo.External.Mark()
		if got := client("ping", "-count", "3", topology.ExternalIP.String()); strings.Count(got, "reply from") < 2 {
			t.Errorf("ICMP: %q, want replies", got)
		}
		icmps := 0
		for _, p := range l.Topo.External.PacketsSince(mark, func(p topology.Packet) bool { return p.Proto == 1 }) {
			icmps++
			if p.Src != egressIP {
				t.Errorf("an ICMP packet of the rack-2 pod arrived from %s, want %s", p.Src, egressIP)
			}
		}
		if icmps == 0 {
			t.Error("no ICMP packet of the rack-2 pod arrived at the external host")
		}
		if _, err := topology.Exec(l.Topo.Router, "ip", "link", "set", "eth1", "mtu", "1300"); err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = topology.Exec(l.Topo.Router, "ip", "link", "set", "eth1", "mtu", "1500") }()
		if got := client("ping", "-count", "3", "-size", "1372", "-df", topology.ExternalIP.String()); !strings.Contains(got, "pmtu 1300") {
			t.Errorf("frag-needed: %q, want the pod to learn the router's MTU of 1300", got)
		}
	})

	// A long-lived TCP connection from the rack-2 pod, each echo checked, across the
	// cordon: the standby has the gateway's conntrack entries, and gets the last ones
	// before the IP moves.
	waitCopy(t, l, other)
	cordoned := startEcho(t, l, "rack2", 12*time.Second)
	time.Sleep(2 * time.Second)
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
	if out, err := cordoned(); err != nil {
		t.Errorf("the TCP connection from the rack-2 pod did not survive the cordon: %v: %s", err, out)
	} else {
		t.Logf("the TCP connection from the rack-2 pod survived the cordon: %s", out)
	}

	// A hard failure of the new gateway node (kubelet and agent killed, link down), with
	// the old one uncordoned: the IP goes back to it, and the streams from it (local
	// again) and from the other rack carry on, none leaking. If the controller's leader
	// was on the failed node, the move waits for the new leader's fence (docs/failover.md).
	t.Run("the gateway node fails", func(t *testing.T) {
		kubectl(nil, "uncordon", gw)
		failed := l.node(moved)
		leader := leaderNode(t, l)
		waitCopy(t, l, gw) // the uncordoned node is the standby again
		echo := startEcho(t, l, "rack2", 15*time.Second)
		time.Sleep(2 * time.Second)
		mark, from := l.Topo.External.Mark(), time.Now()
		failed.KillKubelet()
		if killed, err := failed.KillHostProcesses("egressgw-agent"); err != nil || killed == 0 {
			t.Fatalf("killing the agent on %s: %d killed, %v", moved, killed, err)
		}
		if err := failed.SetLink(false); err != nil {
			t.Fatal(err)
		}
		back := waitGatewayNode(t, l, moved, 3*time.Minute)
		movedAfter := time.Since(from)
		time.Sleep(3 * time.Second)
		packets := l.Topo.External.PacketsSince(mark, nil)
		for _, name := range []string{"on-gateway", "rack2"} {
			st := analyze(packets, name, egressIP, from, time.Now())
			t.Logf("%s failed (the controller's leader was on %s): the egress IP on %s after %s; the stream from %s on %s: %s",
				moved, leader, back, movedAfter.Round(time.Millisecond), name, streams[name], st)
			st.check(t)
		}
		// With the leader elsewhere the IP moves in about 2 s, and the connection goes
		// on; with the leader on the failed node, the move waits for the new leader's
		// fence (about 110 s), past the echo's 30 s of patience.
		switch out, err := echo(); {
		case leader == moved:
			t.Logf("the controller's leader was on the failed node: the TCP connection's %v: %s", err, out)
		case err != nil:
			t.Errorf("the TCP connection from the rack-2 pod did not survive %s's failure: %v: %s", moved, err, out)
		default:
			t.Logf("the TCP connection from the rack-2 pod survived %s's failure: %s", moved, out)
		}
		// The node comes back, so that its pods can go.
		if err := failed.SetLink(true); err != nil {
			t.Fatal(err)
		}
		if err := failed.RestartKubelet(); err != nil {
			t.Fatal(err)
		}
		waitKubectl(t, l.CP, "wait", "--for=condition=Ready", "node/"+moved, "--timeout=2m")
	})
}

// startEcho runs the test client's echo in pod streams/<pod> for d: one TCP connection
// to the external host, every echo checked. wait returns its output and error.
func startEcho(t *testing.T, l *Local, pod string, d time.Duration) (wait func() (string, error)) {
	t.Helper()
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
		defer cancel()
		out, err := l.CP.KubectlCommand(ctx, "-n", "streams", "exec", pod, "--", "/usr/local/bin/egressgw-testclient", "echo",
			"-for", d.String(), fmt.Sprintf("%s:%d", topology.ExternalIP, topology.ServicePort)).CombinedOutput()
		done <- result{strings.TrimSpace(string(out)), err}
	}()
	return func() (string, error) {
		r := <-done
		return r.out, r.err
	}
}

// waitCopy waits until the policy's view shows standby's copy of the holder's
// connections in sync.
func waitCopy(t *testing.T, l *Local, standby string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := l.CP.Kubectl(nil, "get", "egresspolicyviews", "alice", "-o", "jsonpath={.standby.node} {.standby.copy}")
		if err == nil && strings.TrimSpace(out) == standby+" InSync" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the view's standby is %q (%v), want %s InSync", out, err, standby)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
