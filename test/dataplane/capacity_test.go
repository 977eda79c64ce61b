package dataplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// The per-set routes trie (egw_routes_trie in bpf/egw.h) and the most destinations the
// CRD lets one policy have.
const (
	setTrieEntries     = 65_536
	destinationsPerPol = 1_024
)

// fillerRange is where the filler policies' destinations are: /32s no packet is ever
// sent to.
var fillerRange = netip.MustParsePrefix("100.64.0.0/10")

// TestFullSetTrieFailsClosed: a selected pod streams UDP to the external host while
// policies that select it too are added, until its set of policies has more routes than
// a set's trie holds. Its agent then refuses the set's routes but the in-cluster ones, and
// drops everything else: no datagram arrives, from any source, until the fillers go;
// the node's NetworkGatewayNode says CapacityExceeded=True, naming the map and its limit,
// and the agent's /readyz is not ready. Meanwhile, the node's other pods keep egressing
// as before. Once the fillers are deleted, the pod egresses with its egress IP again and
// the condition clears.
//
// The fillers hold limit-2 destinations: with the example's destination and the
// in-cluster routes (at least two: the --cluster-cidrs), the set passes the trie's size,
// while egw_snat_dsts (65,536: every egress IP's destinations) still takes them all, so
// that only the set's trie is full.
func TestFullSetTrieFailsClosed(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	// paul's frontend (selected by the example alone) and alice's backend (selected by
	// nothing) live on this node too, each in a set of its own.
	node := ex.paul.Node
	pod, err := c.AddPod(ctx, node.Name, "alice", "capacity", map[string]string{"role": "frontend", "capacity": "fill"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.RemovePod(context.Background(), pod) })
	if err := egressesAs(ctx, pod, ex.egressIP, 30*time.Second); err != nil {
		t.Fatalf("before the fillers: %v", err)
	}

	start := c.Topo.External.Mark()
	stop := streamFor(t, pod, topology.ExternalIP, "capacity", 8*time.Minute)
	defer stop()
	if err := arrivedFrom(c, start, "capacity", ex.egressIP, 20); err != nil {
		t.Fatal(err)
	}

	log := c.Agent(node.Name).Log
	logAt := fileSize(t, log)
	created := time.Now()
	fillers, err := createFillers(ctx, c, setTrieEntries-2)
	t.Cleanup(func() { deletePolicies(context.Background(), c, fillers) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d filler policies (%d destinations) in %s", len(fillers), setTrieEntries-2, time.Since(created).Round(time.Millisecond))
	var msg string
	if err := eventually(3*time.Minute, func() error {
		var err error
		msg, err = capacityCondition(c, node, "True")
		return err
	}); err != nil {
		t.Fatalf("%v\nagent log:\n%s", err, c.Agent(node.Name).Tail(20))
	}
	t.Logf("CapacityExceeded=True %s after the first filler was created; %s", time.Since(created).Round(time.Millisecond), msg)
	passes := passDurations(t, log, logAt)
	t.Logf("the agent's passes meanwhile: %s", passes)
	if !strings.Contains(msg, "egw_set_routes's tries holds at most 65536 routes per set") {
		t.Errorf("the condition does not name the full map and its limit: %s", msg)
	}
	// Set 0, the union of every policy's destinations, is full too; the pod's set is the
	// other one named.
	if sets := fullSets(msg); len(sets) < 2 || sets[0] != 0 {
		t.Errorf("the condition names the sets %v, want set 0 and the pod's: %s", sets, msg)
	}
	if err := readyz(node, http.StatusServiceUnavailable, "egw_set_routes"); err != nil {
		t.Error(err)
	}

	// The condition is written after the maps: from here on, the pod's set drops.
	full := c.Topo.External.Mark()
	if err := egressesAs(ctx, ex.paul, ex.egressIP, 10*time.Second); err != nil {
		t.Errorf("another selected pod on the node, while the pod's set is full: %v", err)
	}
	if err := egressesAs(ctx, ex.backend, node.IP, 10*time.Second); err != nil {
		t.Errorf("an unselected pod on the node, while the pod's set is full: %v", err)
	}
	time.Sleep(2 * time.Second)
	if got := c.Topo.External.PacketsSince(full, tagged("capacity")); len(got) > 0 {
		t.Errorf("%d datagrams arrived from the pod while its set was full, the first %s", len(got), got[0])
	}

	logAt = fileSize(t, log)
	deleted := time.Now()
	deletePolicies(ctx, c, fillers)
	if err := eventually(2*time.Minute, func() error {
		_, err := capacityCondition(c, node, "False")
		if err == nil {
			err = readyz(node, http.StatusOK, "ok")
		}
		return err
	}); err != nil {
		t.Fatalf("after the fillers were deleted: %v", err)
	}
	t.Logf("CapacityExceeded=False and /readyz ok %s after deleting the fillers; passes: %s",
		time.Since(deleted).Round(time.Millisecond), passDurations(t, log, logAt))
	back := c.Topo.External.Mark()
	if err := arrivedFrom(c, back, "capacity", ex.egressIP, 20); err != nil {
		t.Fatalf("after the fillers were deleted: %v", err)
	}

	sent := stop()
	counts := map[netip.Addr]int{}
	for _, p := range c.Topo.External.PacketsSince(start, tagged("capacity")) {
		counts[p.Src]++
		if p.Src != ex.egressIP {
			t.Errorf("leak: %s (payload %q)", p, p.Payload)
		}
	}
	t.Logf("sent %d datagrams; arrived by source: %v (the pod is %s, its node %s)", sent, counts, pod.IP, node.IP)
}

// egressesAs waits until p's datagrams reach the external host from src.
func egressesAs(ctx context.Context, p *cluster.Pod, src netip.Addr, timeout time.Duration) error {
	return eventually(timeout, func() error {
		got, err := p.WhoUDP(ctx, topology.ExternalIP)
		if err == nil && got.Addr() != src {
			err = fmt.Errorf("%s seen as %s, want %s", p.Name, got.Addr(), src)
		}
		return err
	})
}

func tagged(tag string) func(topology.Packet) bool {
	return func(p topology.Packet) bool { return strings.HasPrefix(p.Payload, tag+"-") }
}

// createFillers creates policies that select the pods labelled capacity=fill in alice's
// namespace, through the example's gateway, with n destinations in fillerRange between
// them, and returns their names.
func createFillers(ctx context.Context, c *cluster.Cluster, n int) ([]string, error) {
	base := fillerRange.Addr()
	var names []string
	for i := 0; n > 0; i++ {
		p := &v1.EgressNATPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("capacity-fill-%02d", i)},
			Spec: v1.EgressNATPolicySpec{
				Sources: []v1.EgressSource{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"user": "alice"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"capacity": "fill"}},
				}},
				Action:     v1.ActionSNAT,
				GatewayRef: &v1.GatewayReference{Name: "default", Namespace: "kube-system"},
			},
		}
		for range min(n, destinationsPerPol) {
			p.Spec.Destinations = append(p.Spec.Destinations, v1.Destination{CIDR: netip.PrefixFrom(base, 32).String()})
			base = base.Next()
			n--
		}
		if _, err := c.Net.NetworkingV1().EgressNATPolicies().Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return names, fmt.Errorf("creating filler %s: %w", p.Name, err)
		}
		names = append(names, p.Name)
	}
	return names, nil
}

func deletePolicies(ctx context.Context, c *cluster.Cluster, names []string) {
	for _, name := range names {
		err := c.Net.NetworkingV1().EgressNATPolicies().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			fmt.Fprintf(os.Stderr, "deleting policy %s: %v\n", name, err)
		}
	}
}

// capacityCondition reads n's CapacityExceeded condition with kubectl, as a user would,
// and returns its message if its status is want.
func capacityCondition(c *cluster.Cluster, n *topology.Node, want string) (string, error) {
	const cond = `{.status.conditions[?(@.type=="CapacityExceeded")]`
	out, err := c.Kubectl(nil, "-n", "kube-system", "get", "networkgatewaynodes.networking.gke.io", n.Name,
		"-o", "jsonpath="+cond+".status}"+`{"\n"}`+cond+".message}")
	if err != nil {
		return "", err
	}
	status, msg, _ := strings.Cut(out, "\n")
	if status != want {
		return "", fmt.Errorf("%s's CapacityExceeded is %q, want %q: %s", n.Name, status, want, msg)
	}
	return msg, nil
}

var fullSet = regexp.MustCompile(`set (\d+) \((\d+) routes\)`)

// fullSets are the set ids a CapacityExceeded message names as past the trie's size.
func fullSets(msg string) []int {
	var out []int
	for _, m := range fullSet.FindAllStringSubmatch(msg, -1) {
		id, _ := strconv.Atoi(m[1])
		if routes, _ := strconv.Atoi(m[2]); routes > setTrieEntries {
			out = append(out, id)
		}
	}
	return out
}

// readyz asks n's agent's /readyz, and wants the code and a body containing want.
func readyz(n *topology.Node, code int, want string) error {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s:9464/readyz", n.IP))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != code || !strings.Contains(string(body), want) {
		return fmt.Errorf("/readyz of %s: %s: %s; want %d and %q", n.Name, resp.Status, body, code, want)
	}
	return nil
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

var passTook = regexp.MustCompile(`"Dataplane pass".* took="([^"]+)"`)

// passDurations are how long the passes an agent logged after offset took.
func passDurations(t *testing.T, log string, offset int64) []time.Duration {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Duration
	for _, m := range passTook.FindAllSubmatch(data[min(offset, int64(len(data))):], -1) {
		if d, err := time.ParseDuration(string(m[1])); err == nil {
			out = append(out, d.Round(time.Millisecond))
		}
	}
	return out
}
