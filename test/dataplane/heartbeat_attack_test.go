package dataplane

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// forger sends heartbeats for a node it is not, as an attacker in a pod would: sealed
// under a key of its own, which it can make (the leader's public key is in the Lease for
// all to read), and with the bytes of a real beat it captured, replayed.
type forger struct {
	node    string
	session *heartbeat.Session // as an agent of node's, with the leader's key
	// answers is a session as a leader, with a key of the forger's, for the node's agent
	answers *heartbeat.Session
	seq     uint64
}

func newForger(t testing.TB, node string, leader heartbeat.Leader) *forger {
	t.Helper()
	key, err := heartbeat.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	s, err := heartbeat.NewAgentSession(key, leader.Key, node)
	if err != nil {
		t.Fatal(err)
	}
	victim, err := heartbeat.NewKeyPair() // the forger cannot know the agent's key: any will do
	if err != nil {
		t.Fatal(err)
	}
	a, err := heartbeat.NewLeaderSession(key, victim.Public, node)
	if err != nil {
		t.Fatal(err)
	}
	return &forger{node: node, session: s, answers: a, seq: 1 << 40}
}

// beat is a beat asking for lease, at the highest term, for generations of every size.
func (f *forger) beat(t testing.TB, lease time.Duration) []byte {
	t.Helper()
	f.seq++
	data, err := f.session.SealBeat(nil, heartbeat.Beat{Node: f.node, Nonce: 1, Seq: f.seq, Term: math.MaxUint64,
		Generation: math.MaxInt64, LeaseMillis: uint32(lease / time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// captureBeat reads one real beat of node's agent off the control plane host's interface,
// as anyone on the node network could.
func captureBeat(t testing.TB, c *cluster.Cluster, leader heartbeat.Leader, node string) []byte {
	t.Helper()
	var conn net.PacketConn
	if err := topology.Do(c.Topo.Control, func() (err error) {
		conn, err = net.ListenPacket("ip4:udp", leader.Addr.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			break
		}
		// The raw socket gives the UDP header and payload.
		if n < 8 || binary.BigEndian.Uint16(buf[2:4]) != leader.Addr.Port() {
			continue
		}
		payload := buf[8:n]
		if len(payload) > 7 && string(payload[:4]) == "EGWB" && payload[5] == 1 && strings.HasPrefix(string(payload[7:]), node) {
			return append([]byte(nil), payload...)
		}
	}
	t.Fatalf("captured no beat of %s's agent in 10s", node)
	return nil
}

// TestForgedBeatsKeepNoGatewayUp: while the gateway node fails, a pod sends the leader
// beats in its name every 10 ms: with a 5-minute lease and the highest term, under a key
// of its own, and a real beat of the node's captured before it failed, replayed. None is
// taken: the egress IP moves as fast as with no forger, and no two nodes ever claim it.
func TestForgedBeatsKeepNoGatewayUp(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	_, leader, err := c.LeaderHeartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := watchFault(t, c, ex, "forged")
	old := w.old
	captured := captureBeat(t, c, leader, old.Name)
	attacker := selectedPodAwayFrom(ex, old)
	conn, err := attacker.DialUDP(ctx, leader.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	f := newForger(t, old.Name, leader)
	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for i := 0; i < 3000; i++ { // 30 s at most
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			for _, d := range [][]byte{f.beat(t, 5*time.Minute), f.beat(t, 100*time.Millisecond), captured} {
				if _, err := conn.Write(d); err == nil {
					n++
				}
			}
		}
	}()
	failHard(t, c, old)
	gw, err := c.WaitGatewayNodeChange(ctx, "egress", old.Name, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gap, lost := w.resumed(t, c, ex.egressIP, gw)
	close(stop)
	forged := <-sent
	t.Logf("with %d forged and replayed beats for %s, answers with %s stopped for %s (%d lost) and resumed on %s",
		forged, old.Name, ex.egressIP, gap.Round(time.Millisecond), lost, gw)
	if forged == 0 {
		t.Fatal("no forged beat was sent: the test tested nothing")
	}
	// A failover takes the lease, the grace and a pass: a forged 5-minute lease taken
	// would keep the IP on the dead node for minutes.
	if limit := failoverLease + failoverGrace + 2*time.Second; gap > limit {
		t.Errorf("the IP took %s to leave the failed node, more than %s: a forged beat kept it Up", gap, limit)
	}
	w.check(t, c, ex.egressIP)
}

// TestTermPoisoningIsIgnored: answers with the highest term reach every agent's
// heartbeat socket, from a pod, and from a host on the node network that spoofs the
// leader's address and port. No agent takes them: each keeps following the leader, and
// the next leader too, so a leader change moves no IP.
func TestTermPoisoningIsIgnored(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	for c.Controllers() < 2 {
		if err := c.StartController(c.Controllers()); err != nil {
			t.Fatal(err)
		}
	}
	leaderIdx, leader, err := c.LeaderHeartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := watchFault(t, c, ex, "poison")
	attacker := selectedPodAwayFrom(ex, w.old)
	for _, n := range c.Topo.Nodes {
		port := agentBeatPort(t, n, leader.Addr)
		poison := newForger(t, n.Name, leader).answer(t, math.MaxUint64)
		conn, err := attacker.DialUDP(ctx, port)
		if err != nil {
			t.Fatal(err)
		}
		// The agent's socket is connected to the leader: the node answers the pod's
		// datagrams with port unreachable, which later writes report.
		for range 20 {
			_, _ = conn.Write(poison)
			time.Sleep(time.Millisecond)
		}
		conn.Close()
		for range 20 {
			if err := spoofUDP(c.Topo.Control, leader.Addr, port, poison); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The agents still follow this leader...
	for _, n := range c.Topo.Nodes {
		waitVouched(t, n, 5, 5*time.Second)
	}
	// ...and the next one, whose term is higher than theirs but far below the poison's.
	if err := c.Controller(leaderIdx).Kill(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.StartController(leaderIdx); err != nil {
			t.Error(err)
		}
	})
	if _, err := c.WaitLeader(ctx, leaderIdx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Topo.Nodes {
		waitVouched(t, n, 5, 15*time.Second)
	}
	time.Sleep(time.Second)
	if now := currentGateway(t, c); now != w.old {
		t.Errorf("the egress IP moved from %s to %s after the agents were poisoned and the leader changed", w.old.Name, now.Name)
	}
	w.check(t, c, ex.egressIP)
}

// answer is an answer to the node's agent, in a session the forger made up.
func (f *forger) answer(t testing.TB, term uint64) []byte {
	t.Helper()
	data, err := f.answers.SealAnswer(nil, heartbeat.Answer{Node: f.node, Nonce: 1, Seq: 1, Term: term, Vouched: math.MaxInt64})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// waitVouched waits for node n's agent to count at least more vouched answers.
func waitVouched(t testing.TB, n *topology.Node, more float64, timeout time.Duration) {
	t.Helper()
	// A restarted agent (an earlier test's cleanup) may not serve its metrics yet.
	var start float64
	if err := eventually(timeout, func() (err error) {
		start, err = agentMetric(n, "egressgw_agent_heartbeats_total", `event="vouched"`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := eventually(timeout, func() error {
		v, err := agentMetric(n, "egressgw_agent_heartbeats_total", `event="vouched"`)
		if err == nil && v < start+more {
			err = fmt.Errorf("%.0f answers vouched", v-start)
		}
		return err
	}); err != nil {
		t.Fatalf("%s's agent no longer follows the leader: %v", n.Name, err)
	}
}

// agentBeatPort finds the node agent's heartbeat socket: the UDP socket connected to the
// leader's address, as `ss` shows it to anyone on the node.
func agentBeatPort(t testing.TB, n *topology.Node, leader netip.AddrPort) netip.AddrPort {
	t.Helper()
	var found netip.AddrPort
	if err := eventually(15*time.Second, func() error {
		out, err := topology.Exec(n.NS, "ss", "-u", "-a", "-n", "-H")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 5 && f[4] == leader.String() {
				found, err = netip.ParseAddrPort(f[3])
				return err
			}
		}
		return fmt.Errorf("no UDP socket connected to %s:\n%s", leader, out)
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// spoofUDP sends payload from ns with a forged source address and port, through a raw
// socket: what any host on the node network can do.
func spoofUDP(ns string, from, to netip.AddrPort, payload []byte) error {
	return topology.Do(ns, func() error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		pkt := make([]byte, 28+len(payload))
		pkt[0], pkt[8], pkt[9] = 0x45, 64, syscall.IPPROTO_UDP
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		src, dst := from.Addr().As4(), to.Addr().As4()
		copy(pkt[12:], src[:])
		copy(pkt[16:], dst[:])
		binary.BigEndian.PutUint16(pkt[20:], from.Port())
		binary.BigEndian.PutUint16(pkt[22:], to.Port())
		binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
		copy(pkt[28:], payload) // UDP checksum 0: none, which IPv4 allows
		return syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: dst})
	})
}

// TestAgentMetricsNeedAToken: what the agents tell of their heartbeats is for those that
// may read it. The probe port serves the kubelet's probes only; /metrics, over TLS,
// answers 401 without a token and 403 to a token without the permission.
func TestAgentMetricsNeedAToken(t *testing.T) {
	c := need(t)
	ctx := context.Background()
	n := c.Topo.Nodes[0]
	plain := http.Client{Timeout: 3 * time.Second}
	resp, err := plain.Get(fmt.Sprintf("http://%s:9464/metrics", n.IP))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the probe port: %s, want 404", resp.Status)
	}
	unbound, err := c.Kube.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{GenerateName: "no-metrics-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Kube.CoreV1().ServiceAccounts("default").Delete(ctx, unbound.Name, metav1.DeleteOptions{})
	tr, err := c.Kube.CoreV1().ServiceAccounts("default").CreateToken(ctx, unbound.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secure := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a token the API server never issued", "forged", http.StatusUnauthorized},
		{"a token without the permission", tr.Status.Token, http.StatusForbidden},
	} {
		req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s:%d/metrics", n.IP, cluster.AgentMetricsPort), nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := secure.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || strings.Contains(string(body), "egressgw_agent_heartbeats_total") {
			t.Errorf("%s: %s, want %d, and no metrics", tc.name, resp.Status, tc.want)
		}
	}
	if body, err := c.AgentMetrics(n); err != nil || !strings.Contains(string(body), "egressgw_agent_heartbeats_total") {
		t.Errorf("the metrics reader's token: %v", err)
	}
}
