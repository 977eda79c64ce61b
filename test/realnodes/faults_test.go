package realnodes

import (
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/topology"
)

// streamThroughFaults: a selected pod on a node other than the gateway's streams UDP
// datagrams (one every 10 ms) to the external host through the gateway, while
//   - the agent DaemonSet is rolled to a new image tag, node by node;
//   - the gateway node fails: its kubelet and its agent are killed and its link goes down.
//
// In both, no datagram of the pod arrives with a source other than the egress IP, and
// the stream arrives again afterwards; the longest gap and the datagrams lost are
// reported. The failed node is then brought back (link up, kubelet restarted, which
// restarts its agent), and rejoins: Ready, its agent Ready, Up in the gateway's status.
func streamThroughFaults(t *testing.T, l *Local, egressIP netip.Addr) {
	kubectl := kubectlFor(t, l.CP)
	kubectl([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: streams, labels: {user: alice}}\n"), "apply", "-f", "-")
	kubectl([]byte(alicePolicy), "apply", "-f", "-")

	t.Run("agent upgrade", func(t *testing.T) {
		gw := waitGatewayNode(t, l, "", time.Minute)
		src := otherNode(t, l, gw)
		stop := startStreamer(t, l, "upgrade", src, egressIP)
		defer stop()
		const tag = "v0.1.1"
		image := InstallRepo + "/egressgw-agent:" + tag
		for _, n := range l.Nodes {
			// A new tag of the same image, as a registry would serve it to each node.
			if out, err := exec.Command("ctr", "-a", n.ContainerdSocket(), "-n", "k8s.io", "images", "tag", "--force",
				InstallRepo+"/egressgw-agent:"+InstallTag, image).CombinedOutput(); err != nil {
				t.Fatalf("tagging the agent's image on %s: %v\n%s", n.Name, err, out)
			}
		}
		mark, from := l.Topo.External.Mark(), time.Now()
		kubectl(nil, "-n", "egressgw-system", "set", "image", "daemonset/egressgw-agent", "agent="+image)
		rollout(t, l, "daemonset/egressgw-agent")
		rolled := time.Since(from)
		time.Sleep(3 * time.Second) // the stream after the last agent's start
		st := analyze(l.Topo.External.PacketsSince(mark, nil), "upgrade", egressIP, from, time.Now())
		images := kubectl(nil, "-n", "egressgw-system", "get", "pods", "-l", "app.kubernetes.io/name=egressgw-agent", "-o", "jsonpath={range .items[*]}{.spec.nodeName}={.spec.containers[0].image} {end}")
		// When each new agent started: where the gap falls.
		t.Logf("new agents started: %s", kubectl(nil, "-n", "egressgw-system", "get", "pods", "-l", "app.kubernetes.io/name=egressgw-agent",
			"-o", "jsonpath={range .items[*]}{.spec.nodeName} {.status.containerStatuses[0].state.running.startedAt}; {end}"))
		for _, n := range l.Nodes {
			if !strings.Contains(images, n.Name+"="+image) {
				t.Errorf("no agent on %s runs %s: %s", n.Name, image, images)
			}
		}
		t.Logf("agent DaemonSet rolled to %s on %d nodes in %s, the gateway %s → %s; the stream from %s: %s",
			tag, len(l.Nodes), rolled.Round(time.Millisecond), gw, waitGatewayNode(t, l, "", time.Minute), src, st)
		st.check(t)
	})

	t.Run("gateway node fails", func(t *testing.T) {
		// The harder case: the controller's leader goes with the gateway, and the other
		// replica must take over before the IP can move. If the leader's node holds no
		// floating IP, a second gateway's IP goes there (placement puts IPs on nodes
		// without one first), and the policy moves to that gateway.
		leader := leaderNode(t, l)
		gw, egressIP := waitGatewayNode(t, l, "", time.Minute), egressIP
		if gw != leader {
			egressIP = netip.MustParseAddr("198.51.100.101")
			kubectl([]byte(gatewayManifest("install-failover", egressIP.String())), "apply", "-f", "-")
			kubectl([]byte(strings.Replace(alicePolicy, "name: install-good", "name: install-failover", 1)), "apply", "-f", "-")
			if gw = waitGatewayNode(t, l, gw, time.Minute); gw != leader {
				t.Fatalf("the second gateway's IP %s went to %s, not to the leader's node %s", egressIP, gw, leader)
			}
		}
		src := otherNode(t, l, gw)
		stop := startStreamer(t, l, "failover", src, egressIP)
		defer stop()
		failed := l.node(gw)
		mark, from := l.Topo.External.Mark(), time.Now()
		failed.KillKubelet()
		killed, err := failed.KillHostProcesses("egressgw-agent")
		if err != nil || killed == 0 {
			t.Fatalf("killing the agent on %s: %d killed, %v", gw, killed, err)
		}
		if err := failed.SetLink(false); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = failed.SetLink(true) })
		// The new leader fences (docs/failover.md): a node that has sent it no heartbeat
		// stays Up until the earlier leader's answers have surely lapsed, the heartbeat hold
		// (90 s) after the new leader won (the Lease's 15 s after the failure).
		moved := waitGatewayNode(t, l, gw, 3*time.Minute)
		movedAfter := time.Since(from)
		time.Sleep(3 * time.Second)
		st := analyze(l.Topo.External.PacketsSince(mark, nil), "failover", egressIP, from, time.Now())
		group := "install-good"
		if egressIP.String() != "198.51.100.100" {
			group = "install-failover"
		}
		status := kubectl(nil, "-n", "kube-system", "get", "networkgatewaygroup", group, "-o", "jsonpath={.status.nodes} {.status.floatingIPs}")
		if !strings.Contains(status, fmt.Sprintf("%q:%q", gw, "Down")) || !strings.Contains(status, fmt.Sprintf("%q:%q", egressIP.String(), moved)) {
			t.Errorf("the gateway's status does not say %s is Down and %s is on %s: %s", gw, egressIP, moved, status)
		}
		t.Logf("%s failed (kubelet and %d agent process killed, link down; the controller leader was on %s): the policy named %s after %s; the stream from %s: %s",
			gw, killed, leader, moved, movedAfter.Round(time.Millisecond), src, st)
		st.check(t)

		// The node comes back: link up, the kubelet restarted, which restarts the agent.
		back := time.Now()
		if err := failed.SetLink(true); err != nil {
			t.Fatal(err)
		}
		if err := failed.RestartKubelet(); err != nil {
			t.Fatal(err)
		}
		waitKubectl(t, l.CP, "wait", "--for=condition=Ready", "node/"+gw, "--timeout=2m")
		rollout(t, l, "daemonset/egressgw-agent")
		deadline := time.Now().Add(time.Minute)
		for {
			status = kubectl(nil, "-n", "kube-system", "get", "networkgatewaygroup", group, "-o", "jsonpath={.status.nodes}")
			if strings.Contains(status, fmt.Sprintf("%q:%q", gw, "Up")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is not Up in the gateway's status a minute after it came back: %s", gw, status)
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("%s back: Ready, its agent restarted and Up, %s after link up", gw, time.Since(back).Round(time.Millisecond))
	})

	kubectl(nil, "delete", "egressnatpolicy", "alice")
	kubectl(nil, "delete", "namespace", "streams", "--wait=true")
}

// streamStats is what the external host saw of one streaming pod in a window.
type streamStats struct {
	tag         string
	received    int               // datagrams from the egress IP
	lost        int               // numbers between the first and the last received, missing
	gap         time.Duration     // the longest time without a datagram from the egress IP
	gapAt       time.Time         // when that gap began
	leaks       []topology.Packet // datagrams with any other source
	tailArrival time.Duration     // from the last datagram to the window's end
}

func (s streamStats) String() string {
	return fmt.Sprintf("%d datagrams from the egress IP, %d lost, longest gap %s (from %s), %d with another source",
		s.received, s.lost, s.gap.Round(time.Millisecond), s.gapAt.Format("15:04:05.000"), len(s.leaks))
}

// check fails the test if a datagram leaked, or if the stream did not come back.
func (s streamStats) check(t *testing.T) {
	t.Helper()
	for i, p := range s.leaks {
		if i == 10 {
			t.Errorf("... and %d more", len(s.leaks)-10)
			break
		}
		t.Errorf("datagram %q arrived with source %s, not the egress IP: %s", p.Payload, p.Src, p)
	}
	if s.received == 0 || s.tailArrival > time.Second {
		t.Errorf("the stream %s did not come back: %d received, the last %s before the end", s.tag, s.received, s.tailArrival.Round(time.Millisecond))
	}
}

// analyze reads the datagrams "<tag>-<seq>" among packets, in [from, to].
func analyze(packets []topology.Packet, tag string, egressIP netip.Addr, from, to time.Time) streamStats {
	st := streamStats{tag: tag}
	last := from
	seqs := map[int]bool{}
	lo, hi := -1, -1
	for _, p := range packets {
		rest, ok := strings.CutPrefix(p.Payload, tag+"-")
		if !ok || p.Proto != 17 || p.At.Before(from) || p.At.After(to) {
			continue
		}
		if p.Src != egressIP {
			st.leaks = append(st.leaks, p)
			continue
		}
		seq, err := strconv.Atoi(rest)
		if err != nil {
			continue
		}
		st.received++
		seqs[seq] = true
		if lo < 0 || seq < lo {
			lo = seq
		}
		hi = max(hi, seq)
		if d := p.At.Sub(last); d > st.gap {
			st.gap, st.gapAt = d, last
		}
		last = p.At
	}
	st.tailArrival = to.Sub(last)
	if lo >= 0 {
		st.lost = hi - lo + 1 - len(seqs)
	}
	return st
}

// startStreamer runs pod streams/name on node, streaming datagrams tagged name to the
// external host, and waits until they arrive from egressIP. stop deletes the pod. Its
// group may open ICMP sockets (net.ipv4.ping_group_range), for kubectl exec ... ping.
func startStreamer(t *testing.T, l *Local, name, node string, egressIP netip.Addr) (stop func()) {
	t.Helper()
	target := fmt.Sprintf("%s:%d", topology.ExternalIP, topology.ServicePort)
	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {namespace: streams, name: %[1]s, labels: {app: frontend}}
spec:
  nodeSelector: {kubernetes.io/hostname: %[2]s}
  terminationGracePeriodSeconds: 1
  securityContext:
    sysctls: [{name: net.ipv4.ping_group_range, value: "0 2147483647"}]
  containers:
  - {name: stream, image: %[3]s, imagePullPolicy: Never, args: [stream, -tag, %[1]s, -interval, 10ms, -for, 5m, %[4]q]}
`, name, node, TestClientImage, target)
	if _, err := l.CP.Kubectl([]byte(pod), "create", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	mark := l.Topo.External.Mark()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := l.Topo.External.PacketsSince(mark, func(p topology.Packet) bool {
			return strings.HasPrefix(p.Payload, name+"-") && p.Src == egressIP
		})
		if len(got) >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the streamer %s on %s: %d datagrams from %s within 2 minutes", name, node, len(got), egressIP)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return func() {
		if _, err := l.CP.Kubectl(nil, "-n", "streams", "delete", "pod", name, "--wait=true"); err != nil {
			t.Error(err)
		}
	}
}

// waitGatewayNode waits until EgressNATPolicy alice is Ready with a gateway node other
// than not, and returns it.
func waitGatewayNode(t *testing.T, l *Local, not string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := l.CP.Kubectl(nil, "get", "egressnatpolicy", "alice", "-o", `jsonpath={.status.gatewayNode} {.status.conditions[?(@.type=="Ready")].status}`)
		if f := strings.Fields(out); err == nil && len(f) == 2 && f[1] == "True" && f[0] != not {
			return f[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("EgressNATPolicy alice not Ready with a gateway node other than %q within %s: %q %v", not, timeout, out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func otherNode(t *testing.T, l *Local, name string) string {
	t.Helper()
	i := slices.IndexFunc(l.Nodes, func(n *Node) bool { return n.Name != name })
	if i < 0 {
		t.Fatalf("no node other than %s", name)
	}
	return l.Nodes[i].Name
}

func (l *Local) node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// leaderNode is the node of the controller replica that holds the leader Lease.
func leaderNode(t *testing.T, l *Local) string {
	t.Helper()
	holder, err := l.CP.Kubectl(nil, "-n", "egressgw-system", "get", "lease", "egressgw-controller", "-o", "jsonpath={.spec.holderIdentity}")
	if err != nil {
		t.Fatal(err)
	}
	pods, err := l.CP.Kubectl(nil, "-n", "egressgw-system", "get", "pods", "-l", "app.kubernetes.io/name=egressgw-controller", "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(pods, "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(holder, f[0]) {
			return f[1]
		}
	}
	return "(unknown: " + holder + ")"
}

func rollout(t *testing.T, l *Local, what string) {
	t.Helper()
	waitKubectl(t, l.CP, "-n", "egressgw-system", "rollout", "status", what, "--timeout=3m")
}
