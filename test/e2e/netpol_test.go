package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// TestNetworkPolicyWinsOverEgressPolicy: the spec evaluates network policy first. A pod
// that an egress policy selects, and that a NetworkPolicy on its node forbids to reach
// the external host, sends nothing there: the packet is dropped on the source node and
// never reaches the gateway. What the NetworkPolicy allows the same pod, and what another
// pod on the same node sends, still leaves with the egress IP. The preview of the
// aggregated API says the same.
//
// The topology's CNI is the harness: it does not read NetworkPolicy objects. So the test
// both creates the NetworkPolicy, which the aggregated API reads, and installs on the
// node the nftables rule an nftables CNI derives from it (topology.Node.DenyEgress), which
// the dataplane meets.
func TestNetworkPolicyWinsOverEgressPolicy(t *testing.T) {
	c := need(t)
	const ns, name = "e2e-netpol", "e2e-netpol"
	kubectl(t, c, namespaceYAML(ns), "apply", "-f", "-")
	apply(t, c, gatewayYAML(name, netpolIP)+"---\n"+policyYAML(name, name, ns, "client", externalHost, externalHost2), netpolIP)
	p := waitPolicyReady(t, c, name)
	gateway := c.Node(p.Node)
	egressIP := netip.MustParseAddr(netpolIP)
	// Both pods on a node other than the gateway: a packet that reached the gateway would
	// have been steered there, which the gateway's counters show.
	node := otherNode(t, c, gateway.Name)
	denied := addPod(t, c, node.Name, ns, "denied", "client", "netpol", "deny")
	allowed := addPod(t, c, node.Name, ns, "allowed", "client")
	for _, pod := range []*cluster.Pod{denied, allowed} {
		// Before the deny, both leave with the egress IP: the drop below is network
		// policy's, not a policy that does not apply.
		if err := waitSeenAs(pod, topology.ExternalIP, egressIP, time.Minute); err != nil {
			t.Fatal(err)
		}
	}

	apply(t, c, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-external-host
  namespace: e2e-netpol
spec:
  podSelector:
    matchLabels:
      netpol: deny
  policyTypes:
  - Egress
  egress:
  - to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except:
        - `+externalHost.String()+`
`)
	if err := node.DenyEgress(denied.IP, externalHost); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := node.ClearPolicy(); err != nil {
			t.Errorf("removing the network-policy rule of %s: %v", node.Name, err)
		}
	})

	t.Run("the denied packet is dropped on the source node", func(t *testing.T) {
		dropsBefore := netpolDrops(t, node)
		steeredBefore := gatewaySteeredIn(t, gateway)
		mark := c.Topo.External.Mark()
		const tag = "e2e-netpol-denied"
		if answered := sendTagged(t, denied, topology.ExternalIP, tag, 20); answered > 0 {
			t.Errorf("%d of 20 denied datagrams were answered by the external host", answered)
		}
		if got := c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool { return strings.HasPrefix(p.Payload, tag) }); len(got) > 0 {
			t.Errorf("%d denied datagrams reached the external host, the first from %s", len(got), got[0].Src)
		}
		if drops := netpolDrops(t, node) - dropsBefore; drops < 20 {
			t.Errorf("the network-policy rule of %s dropped %d packets, want the 20 sent", node.Name, drops)
		}
		if n := gatewaySteeredIn(t, gateway) - steeredBefore; n != 0 {
			t.Errorf("the gateway %s SNATed %v steered packets while only the denied pod sent", gateway.Name, n)
		}
	})

	t.Run("allowed traffic is SNATed", func(t *testing.T) {
		steeredBefore := gatewaySteeredIn(t, gateway)
		for _, tc := range []struct {
			pod *cluster.Pod
			dst netip.Addr
		}{
			{allowed, topology.ExternalIP}, // another pod on the same node
			{denied, topology.ExternalIP2}, // the same pod, where its NetworkPolicy allows
		} {
			tcp, udp, err := seenAs(tc.pod, tc.dst)
			if err != nil {
				t.Error(err)
				continue
			}
			if tcp != egressIP || udp != egressIP {
				t.Errorf("%s to %s was seen as %s (TCP) and %s (UDP), want %s", tc.pod.Name, tc.dst, tcp, udp, egressIP)
			}
		}
		// The counter that stayed still above counts: it moved for the allowed packets.
		if n := gatewaySteeredIn(t, gateway) - steeredBefore; n == 0 {
			t.Errorf("the gateway %s counted no steered packet for the allowed traffic", gateway.Name)
		}
	})

	t.Run("the preview agrees", func(t *testing.T) {
		for _, tc := range []struct {
			name, pod   string
			dst         netip.Addr
			wantVerdict string
			wantSource  string
			wantStep    string // stage/action/object of a step the path must contain
		}{
			{"denied", "denied", topology.ExternalIP, "Drop", "", "NetworkPolicy/Drop/NetworkPolicy e2e-netpol/deny-external-host"},
			{"allowed by its NetworkPolicy", "denied", topology.ExternalIP2, "SNAT", netpolIP, "EgressNATPolicy/Steer/EgressNATPolicy e2e-netpol"},
			{"no NetworkPolicy", "allowed", topology.ExternalIP, "SNAT", netpolIP, "EgressNATPolicy/Steer/EgressNATPolicy e2e-netpol"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				// The aggregated API reads NetworkPolicies from its informer cache: give it
				// the moment a watch takes.
				if err := eventually(30*time.Second, func() error {
					got, err := preview(c, ns, tc.pod, tc.dst, "UDP", topology.ServicePort)
					switch {
					case err != nil:
						return err
					case got.Status.Verdict != tc.wantVerdict || got.Status.SourceIP != tc.wantSource:
						return fmt.Errorf("preview of %s to %s: verdict %q, source %q, want %q, %q", tc.pod, tc.dst, got.Status.Verdict, got.Status.SourceIP, tc.wantVerdict, tc.wantSource)
					case !got.hasStep(tc.wantStep):
						return fmt.Errorf("preview of %s to %s has no %s step: %+v", tc.pod, tc.dst, tc.wantStep, got.Status.Steps)
					}
					return nil
				}); err != nil {
					t.Error(err)
				}
			})
		}
	})
}

// sendTagged sends n datagrams "<tag>-<i>" from the pod to dst's service port, 20 ms
// apart, and returns how many were answered.
func sendTagged(t *testing.T, pod *cluster.Pod, dst netip.Addr, tag string, n int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pod.DialUDP(ctx, netip.AddrPortFrom(dst, topology.ServicePort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range n {
		if _, err := fmt.Fprintf(conn, "%s-%d", tag, i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	answered := 0
	buf := make([]byte, 512)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := conn.Read(buf); err != nil {
			return answered
		}
		answered++
	}
}

var nftCounter = regexp.MustCompile(`counter packets (\d+)`)

// netpolDrops sums the packet counters of the node's network-policy rules.
func netpolDrops(t *testing.T, n *topology.Node) int {
	t.Helper()
	out, err := n.Exec("nft", "list", "chain", "ip", "cni", "netpol")
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, m := range nftCounter.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		sum += v
	}
	return sum
}

// gatewaySteeredIn reads, from the agent's metrics on the node's address, how many
// steered packets the node took in and SNATed: what reaches a gateway.
func gatewaySteeredIn(t *testing.T, n *topology.Node) float64 {
	t.Helper()
	body, err := sys.AgentMetrics(n)
	if err != nil {
		t.Fatal(err)
	}
	const series = `egressgw_agent_packets_total{verdict="uplink_in_snat"} `
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("the agent of %s exports no %s", n.Name, strings.TrimSpace(series))
	return 0
}

// previewResult is the part of an EgressPreview's answer the suite reads.
type previewResult struct {
	Status struct {
		Verdict     string `json:"verdict"`
		SourceIP    string `json:"sourceIP"`
		Policy      string `json:"policy"`
		GatewayNode string `json:"gatewayNode"`
		Steps       []struct {
			Stage   string `json:"stage"`
			Action  string `json:"action"`
			Node    string `json:"node"`
			Object  string `json:"object"`
			Message string `json:"message"`
		} `json:"steps"`
	} `json:"status"`
}

// hasStep reports whether the path has a step "stage/action/object".
func (p previewResult) hasStep(want string) bool {
	for _, s := range p.Status.Steps {
		if s.Stage+"/"+s.Action+"/"+s.Object == want {
			return true
		}
	}
	return false
}

// preview asks the aggregated API, with `kubectl create -f preview.yaml -o json`, which
// path one packet from the pod would take.
func preview(c *cluster.Cluster, ns, pod string, dst netip.Addr, proto string, port int) (previewResult, error) {
	var p previewResult
	out, err := c.Kubectl([]byte(fmt.Sprintf(`apiVersion: egress.egressgw.io/v1alpha1
kind: EgressPreview
spec:
  source:
    namespace: %s
    name: %s
  destination: %q
  protocol: %s
  port: %d
`, ns, pod, dst, proto, port)), "create", "-f", "-", "-o", "json")
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		return p, fmt.Errorf("decoding the preview: %w\n%s", err, out)
	}
	return p, nil
}
