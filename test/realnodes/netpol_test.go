package realnodes

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/topology"
)

// networkPolicyFirst: the spec evaluates network policy before egress NAT. A real pod
// that EgressNATPolicy alice selects, on a node other than the gateway's, first leaves
// with the egress IP; once a NetworkPolicy forbids it the external host, nothing of it
// arrives there, with any source, while what the NetworkPolicy still allows it leaves as
// before; the preview says Drop at the NetworkPolicy stage.
//
// What enforces the NetworkPolicy is the one part that is not a real component: the
// rule an nftables policy enforcer installs for it (topology.Node.DenyEgress), in the
// forward hook of the pod's node. kube-network-policies, the NetworkPolicy enforcer of
// SIG Network that the Go module proxy serves, queues packets with nftables' queue
// statement, which this machine's kernel lacks (CONFIG_NFT_QUEUE is not set: `nft add
// rule ... queue num 100` fails with "No such file or directory"); kube-router, the other
// one served, is served only at a version with reported security flaws.
func networkPolicyFirst(t *testing.T, l *Local, egressIP netip.Addr) {
	kubectl := kubectlFor(t, l.CP)
	kubectl([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: netpol, labels: {user: alice}}\n"), "apply", "-f", "-")
	kubectl([]byte(alicePolicy), "apply", "-f", "-")
	gw := waitGatewayNode(t, l, "", time.Minute)
	node := l.node(otherNode(t, l, gw))
	kubectl([]byte(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {namespace: netpol, name: denied, labels: {app: frontend, netpol: deny}}
spec:
  nodeSelector: {kubernetes.io/hostname: %s}
  terminationGracePeriodSeconds: 1
  containers:
  - {name: hold, image: %s, imagePullPolicy: Never, args: [serve]}
`, node.Name, TestClientImage)), "apply", "-f", "-")
	waitKubectl(t, l.CP, "-n", "netpol", "wait", "--for=condition=Ready", "pod/denied", "--timeout=2m")
	podIP := netip.MustParseAddr(kubectl(nil, "-n", "netpol", "get", "pod", "denied", "-o", "jsonpath={.status.podIP}"))
	who := func(dst netip.Addr) (string, error) {
		out, err := l.CP.Kubectl(nil, "-n", "netpol", "exec", "denied", "--", TestClientEntrypoint, "who", fmt.Sprintf("%s:%d", dst, topology.ServicePort))
		return strings.TrimSpace(out), err
	}
	// Before the NetworkPolicy: the egress IP, so the drop below is network policy's.
	if seen, err := who(topology.ExternalIP); err != nil || !strings.HasPrefix(seen, egressIP.String()+":") {
		t.Fatalf("before the NetworkPolicy, the external host saw netpol/denied as %q (%v), want %s", seen, err, egressIP)
	}

	kubectl([]byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: netpol, name: deny-external-host}
spec:
  podSelector: {matchLabels: {netpol: deny}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 0.0.0.0/0, except: [`+topology.ExternalIP.String()+`/32]}
`), "apply", "-f", "-")
	if err := node.DenyEgress(podIP, netip.PrefixFrom(topology.ExternalIP, 32)); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := node.ClearPolicy(); err != nil {
			t.Errorf("removing the network-policy rule of %s: %v", node.Name, err)
		}
	}()
	mark := l.Topo.External.Mark()
	if seen, err := who(topology.ExternalIP); err == nil {
		t.Errorf("the NetworkPolicy forbids netpol/denied the external host, yet it was seen as %s", seen)
	}
	if got := l.Topo.External.PacketsSince(mark, func(p topology.Packet) bool {
		return p.Dst == topology.ExternalIP && p.DstPort == topology.ServicePort
	}); len(got) > 0 {
		t.Errorf("%d packets reached %s after the NetworkPolicy forbade it, the first from %s", len(got), topology.ExternalIP, got[0].Src)
	}
	// What the NetworkPolicy allows still leaves, as the egress policy says (not selected
	// for this destination: the node's IP).
	if seen, err := who(topology.ExternalIP2); err != nil || !strings.HasPrefix(seen, node.IP.String()+":") {
		t.Errorf("the external host saw netpol/denied at %s as %q (%v), want the node's %s", topology.ExternalIP2, seen, err, node.IP)
	}
	preview := kubectl([]byte(fmt.Sprintf(`apiVersion: egress.egressgw.io/v1alpha1
kind: EgressPreview
spec:
  source: {namespace: netpol, name: denied}
  destination: %q
  protocol: TCP
  port: %d
`, topology.ExternalIP, topology.ServicePort)), "create", "-f", "-", "-o", "jsonpath={range .status.steps[*]}{.stage} {.action}: {.message}{\"\\n\"}{end}")
	if first, _, _ := strings.Cut(preview, "\n"); !strings.HasPrefix(first, "NetworkPolicy Drop") {
		t.Errorf("the preview of netpol/denied to %s does not begin with NetworkPolicy Drop:\n%s", topology.ExternalIP, preview)
	}
	t.Logf("netpol/denied (%s on %s, selected, gateway %s): dropped by network policy before egress NAT; the preview:\n%s", podIP, node.Name, gw, preview)
	kubectl(nil, "delete", "namespace", "netpol", "--wait=true")
}
