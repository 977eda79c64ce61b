package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// TestPodOutsideThePodCIDRs: a selected pod whose IPAM gave it an address outside every
// Node's spec.podCIDRs (as Calico IPAM does). Its Pod object comes first, before its veth
// exists, so the agent knows its address but has no veth to put its program on: the nft
// backstop must drop what it sends (it did not cover the pod, whose packets left with the
// node's IP), and once the program is on, the gateway on another node must SNAT it (it
// dropped it as no pod's). Every datagram arrives from the egress IP, or not at all.
func TestPodOutsideThePodCIDRs(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	node := selectedPodAwayFrom(ex, currentGateway(t, c)).Node
	addr := netip.AddrFrom4([4]byte{198, 19, byte(node.Index), 77})
	served := netip.PrefixFrom(addr, 32).String()

	early := &cluster.Pod{Pod: &topology.Pod{Name: "paul/outside", IP: addr, Node: node}, Namespace: "paul"}
	if err := c.RegisterPod(ctx, early, "outside", map[string]string{"role": "frontend"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Kube.CoreV1().Pods("paul").Delete(context.Background(), "outside", metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
	err := eventually(20*time.Second, func() error {
		set, err := node.Exec("nft", "list", "set", "ip", "egressgw", "pod_cidrs")
		if err != nil {
			return err
		}
		if !strings.Contains(set, addr.String()) {
			return fmt.Errorf("the backstop's pod_cidrs on %s leave out %s:\n%s", node.Name, addr, set)
		}
		r, err := c.Net.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace).Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !slices.Contains(r.Status.ServedPodAddresses, served) {
			return fmt.Errorf("%s reports serving %v, not %s", node.Name, r.Status.ServedPodAddresses, served)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dropped := backstopDrops(t, node)

	tp, err := c.Topo.AddPodAt(node, "paul/outside", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Topo.RemovePod(tp) })
	mark := c.Topo.External.Mark()
	stop := stream(t, &cluster.Pod{Pod: tp, Namespace: "paul"}, topology.ExternalIP, "outside")
	defer stop()
	// The agent attaches to a veth on its next pass: a second of the pod's traffic meets
	// the backstop first; then a change to the pod brings the pass.
	time.Sleep(time.Second)
	patch := []byte(`{"metadata":{"labels":{"kick":"1"}}}`)
	if _, err := c.Kube.CoreV1().Pods("paul").Patch(ctx, "outside", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	err = arrivedFrom(c, mark, "outside", ex.egressIP, 20)
	sent := stop()
	if err != nil {
		t.Error(err)
	}
	time.Sleep(200 * time.Millisecond) // the sniffer's last packets
	var arrived int
	for _, p := range c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool { return strings.HasPrefix(p.Payload, "outside-") }) {
		arrived++
		if p.Src != ex.egressIP {
			t.Errorf("leak: %s", p)
		}
	}
	if d := backstopDrops(t, node) - dropped; d == 0 {
		t.Error("the backstop dropped nothing: the pod's veth had its program from the first packet, and the test tested nothing")
	}
	t.Logf("sent %d datagrams, %d arrived", sent, arrived)
}

var backstopCounter = regexp.MustCompile(`counter packets (\d+) bytes \d+ drop comment "fail closed: a pod whose veth`)

// backstopDrops reads the packets the node's nft backstop has dropped.
func backstopDrops(t *testing.T, n *topology.Node) int {
	t.Helper()
	out, err := n.Exec("nft", "list", "chain", "ip", "egressgw", "forward")
	if err != nil {
		t.Fatal(err)
	}
	m := backstopCounter.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no backstop rule in the forward chain:\n%s", out)
	}
	v, _ := strconv.Atoi(m[1])
	return v
}
