package realnodes

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// alicePolicy selects the pods labelled app=frontend in namespaces labelled user=alice,
// for the external host, through the gateway install-good.
var alicePolicy = fmt.Sprintf(`apiVersion: networking.gke.io/v1
kind: EgressNATPolicy
metadata: {name: alice}
spec:
  sources:
  - namespaceSelector: {matchLabels: {user: alice}}
    podSelector: {matchLabels: {app: frontend}}
  action: SNAT
  destinations:
  - cidr: %s/32
  gatewayRef: {namespace: kube-system, name: install-good}
`, topology.ExternalIP)

// whoPod is a pod of namespace alice on node whose containers tcp and udp ask the external
// host, as they start, which source it saw; its container hold serves, to keep the pod
// Running (a finished pod has no podegress).
func whoPod(name, app, node string) string {
	target := fmt.Sprintf("%s:%d", topology.ExternalIP, topology.ServicePort)
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {namespace: alice, name: %[1]s, labels: {app: %[2]s}}
spec:
  nodeName: %[3]s
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - {name: tcp, image: %[4]s, imagePullPolicy: Never, args: [who, %[5]q]}
  - {name: udp, image: %[4]s, imagePullPolicy: Never, args: [who, -udp, %[5]q]}
  - {name: hold, image: %[4]s, imagePullPolicy: Never, args: [serve]}
`, name, app, node, TestClientImage, target)
}

// podTraffic proves that real pods' traffic goes through the gateway: with the policy in
// place before the pods exist, a selected pod on a node other than the gateway's is seen
// by the external host as the egress IP from its very first packets, and no packet of it
// arrives with another source; an unselected pod on the same node is seen as its node.
func podTraffic(t *testing.T, l *Local, egressIP netip.Addr) {
	cp, ext := l.CP, l.Topo.External
	kubectl := kubectlFor(t, cp)
	kubectl(nil, "create", "namespace", "alice")
	kubectl(nil, "label", "namespace", "alice", "user=alice")
	kubectl([]byte(alicePolicy), "apply", "-f", "-")
	gateway := waitGatewayNode(t, l, "", time.Minute)
	node := l.node(otherNode(t, l, gateway))
	t.Logf("EgressNATPolicy alice Ready, gateway node %s; the pods run on %s (%s)", gateway, node.Name, node.IP)

	for _, p := range []struct {
		name string
		want netip.Addr
	}{{"frontend", egressIP}, {"backend", node.IP}} {
		mark := ext.Mark()
		created := time.Now()
		kubectl([]byte(whoPod(p.name, p.name, node.Name)), "create", "-f", "-")
		podIP, exits := waitAsked(t, cp, p.name, 2*time.Minute)
		t.Logf("%s (%s): tcp and udp exited %v, %s after creation", p.name, podIP, exits, time.Since(created).Round(time.Millisecond))

		for _, ctr := range []string{"tcp", "udp"} {
			out, err := containerLog(cp, p.name, ctr)
			seen, perr := netip.ParseAddrPort(out)
			switch {
			case err != nil || exits[ctr] != 0 || perr != nil:
				// The first attempt failed: acceptable only for the selected pod, and only
				// if nothing of it arrived with another source (checked below).
				if p.name != "frontend" {
					t.Errorf("%s/%s got no answer: exit %d, %q %v", p.name, ctr, exits[ctr], out, err)
				} else {
					t.Logf("%s/%s got no answer: exit %d, %q %v", p.name, ctr, exits[ctr], out, err)
				}
			case seen.Addr() != p.want:
				t.Errorf("the external host saw %s/%s as %s, want %s", p.name, ctr, seen, p.want)
			default:
				t.Logf("the external host saw %s/%s as %s", p.name, ctr, seen)
			}
		}

		got := ext.PacketsSince(mark, func(q topology.Packet) bool {
			return q.Dst == topology.ExternalIP && q.DstPort == topology.ServicePort
		})
		protos := map[uint8]int{}
		for _, q := range got {
			protos[q.Proto]++
			if q.Src != p.want {
				t.Errorf("a packet of %s arrived with source %s (node %s, pod %s), not %s: %s", p.name, q.Src, node.IP, podIP, p.want, q)
			}
		}
		t.Logf("%s: %d packets arrived at the external host (TCP %d, UDP %d), first at %s", p.name, len(got), protos[6], protos[17], first(got, created))
		if p.name == "backend" && (protos[6] == 0 || protos[17] == 0) {
			t.Errorf("backend's TCP and UDP did not both arrive: %v", got)
		}

		if p.name == "frontend" {
			pe := kubectl(nil, "get", "podegresses", "-n", "alice")
			t.Logf("kubectl get podegresses -n alice:\n%s", pe)
			if line := lineOf(pe, "frontend"); !strings.Contains(line, egressIP.String()) || !strings.Contains(line, "alice") {
				t.Errorf("kubectl get podegresses -n alice does not show frontend steered by alice to %s:\n%s", egressIP, pe)
			}
		}
		kubectl(nil, "-n", "alice", "delete", "pod", p.name, "--wait=true")
	}
	kubectl(nil, "delete", "egressnatpolicy", "alice")
	kubectl(nil, "delete", "namespace", "alice", "--wait=true")
}

// containerLog is what container ctr of pod alice/name wrote last, from kubectl logs.
func containerLog(cp *controlplane.ControlPlane, name, ctr string) (string, error) {
	out, err := cp.Kubectl(nil, "-n", "alice", "logs", name, "-c", ctr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), err
}

// first says how long after created the first of packets arrived.
func first(packets []topology.Packet, created time.Time) string {
	if len(packets) == 0 {
		return "none"
	}
	return packets[0].At.Sub(created).Round(time.Millisecond).String() + " after creation"
}

// waitAsked waits until the containers tcp and udp of pod alice/name have exited, and
// returns the pod's IP and their exit codes.
func waitAsked(t *testing.T, cp *controlplane.ControlPlane, name string, timeout time.Duration) (netip.Addr, map[string]int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		out, err := cp.Kubectl(nil, "-n", "alice", "get", "pod", name, "-o", "json")
		if err == nil {
			var pod struct {
				Status struct {
					PodIP             string `json:"podIP"`
					ContainerStatuses []struct {
						Name  string `json:"name"`
						State struct {
							Terminated *struct {
								ExitCode int `json:"exitCode"`
							} `json:"terminated"`
						} `json:"state"`
					} `json:"containerStatuses"`
				} `json:"status"`
			}
			if err := json.Unmarshal([]byte(out), &pod); err != nil {
				t.Fatal(err)
			}
			exits := map[string]int{}
			for _, s := range pod.Status.ContainerStatuses {
				if s.State.Terminated != nil && (s.Name == "tcp" || s.Name == "udp") {
					exits[s.Name] = s.State.Terminated.ExitCode
				}
			}
			if len(exits) == 2 {
				ip, _ := netip.ParseAddr(pod.Status.PodIP)
				return ip, exits
			}
			last = string(out)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod alice/%s: tcp and udp not both exited within %s: %s", name, timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
