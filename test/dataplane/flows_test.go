package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// tcpStream is a long-lived TCP connection from a pod to the external host's echo
// server: it sends a numbered line every 20 ms and checks every echo against what it
// sent, byte for byte. A reset, a wrong byte or a stall longer than 30 s ends it with an
// error.
type tcpStream struct {
	pod    *cluster.Pod
	tag    string
	source netip.AddrPort // what the external host saw when the stream opened
	opened time.Time
	conn   net.Conn
	quit   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	echoed   int
	lastEcho time.Time
	// stalls are the gaps between echoes longer than 50 ms, with when each ended.
	stalls []stall
	err    error
}

type stall struct {
	from, to time.Time
}

func (s stall) took() time.Duration { return s.to.Sub(s.from) }

// streamLine is line i of a stream: its tag, its number, and bytes that depend on both.
func streamLine(tag string, i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s-%d ", tag, i)
	for j := range 48 {
		b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[(i*31+j*7)%36])
	}
	b.WriteByte('\n')
	return b.String()
}

func openTCPStream(ctx context.Context, pod *cluster.Pod, tag string) (*tcpStream, error) {
	conn, err := pod.DialTCP(ctx, netip.AddrPortFrom(topology.ExternalIP, topology.ServicePort))
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "ECHO\n"); err != nil {
		conn.Close()
		return nil, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("the echo server's first line: %w", err)
	}
	src, err := netip.ParseAddrPort(strings.TrimSpace(line))
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	s := &tcpStream{pod: pod, tag: tag, source: src, conn: conn, quit: make(chan struct{}), done: make(chan struct{}), lastEcho: time.Now(), opened: time.Now()}
	go s.send()
	go s.receive(r)
	return s, nil
}

func (s *tcpStream) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *tcpStream) send() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for i := 0; i < 30000; i++ { // 10 minutes at most
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := s.conn.Write([]byte(streamLine(s.tag, i))); err != nil {
			s.fail(fmt.Errorf("sending line %d: %w", i, err))
			return
		}
	}
}

func (s *tcpStream) receive(r *bufio.Reader) {
	defer close(s.done)
	for i := 0; ; i++ {
		_ = s.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			select {
			case <-s.quit:
			default:
				s.fail(fmt.Errorf("reading echo %d: %w", i, err))
			}
			return
		}
		if want := streamLine(s.tag, i); line != want {
			s.fail(fmt.Errorf("echo %d is %q, want %q", i, line, want))
			return
		}
		now := time.Now()
		s.mu.Lock()
		if gap := now.Sub(s.lastEcho); gap > 50*time.Millisecond {
			s.stalls = append(s.stalls, stall{from: s.lastEcho, to: now})
		}
		s.echoed, s.lastEcho = i+1, now
		s.mu.Unlock()
	}
}

// progress is how many echoes came back, and the stream's error.
func (s *tcpStream) progress() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.echoed, s.err
}

// stallAfter is the longest stall that ended after t.
func (s *tcpStream) stallAfter(t time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var longest time.Duration
	for _, st := range s.stalls {
		if st.to.After(t) {
			longest = max(longest, st.took())
		}
	}
	return longest
}

func (s *tcpStream) close() {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	_ = s.conn.Close()
	<-s.done
}

// streams are n long-lived streams from the pods, in turn.
type streams []*tcpStream

func openStreams(t testing.TB, pods []*cluster.Pod, n int, tag string) streams {
	t.Helper()
	var out streams
	t.Cleanup(func() {
		for _, s := range out {
			s.close()
		}
	})
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := openTCPStream(ctx, pods[i%len(pods)], fmt.Sprintf("%s%d", tag, i))
		cancel()
		if err != nil {
			t.Fatalf("opening stream %d from %s: %v", i, pods[i%len(pods)].Name, err)
		}
		out = append(out, s)
	}
	return out
}

// flowing waits until every stream has echoed at least 25 lines (half a second) more than
// it had when called, and fails the test for any that broke.
func (ss streams) flowing(t testing.TB, within time.Duration) {
	t.Helper()
	base := make([]int, len(ss))
	for i, s := range ss {
		base[i], _ = s.progress()
	}
	err := eventually(within, func() error {
		for i, s := range ss {
			n, err := s.progress()
			if err != nil {
				return fmt.Errorf("stream %s from %s (as %s) broke: %w", s.tag, s.pod.Name, s.source, err)
			}
			if n < base[i]+25 {
				return fmt.Errorf("stream %s from %s echoed %d lines, want %d", s.tag, s.pod.Name, n, base[i]+25)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// survivors says, for each stream, whether it echoed 25 more lines within the time
// given, unbroken.
func (ss streams) survivors(within time.Duration) []bool {
	base := make([]int, len(ss))
	for i, s := range ss {
		base[i], _ = s.progress()
	}
	out := make([]bool, len(ss))
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		done := true
		for i, s := range ss {
			n, err := s.progress()
			out[i] = err == nil && n >= base[i]+25
			done = done && (out[i] || err != nil)
		}
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return out
}

// close closes every stream.
func (ss streams) close() {
	for _, s := range ss {
		s.close()
	}
}

// stallsAfter are each stream's longest stall that ended after t, sorted.
func (ss streams) stallsAfter(t time.Time) []time.Duration {
	var out []time.Duration
	for _, s := range ss {
		out = append(out, s.stallAfter(t))
	}
	slices.Sort(out)
	return out
}

// leaked are the stream packets the external host saw from another source than ip
// since mark.
func (ss streams) leaked(c *cluster.Cluster, mark int, tag string, ip netip.Addr) []topology.Packet {
	return c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool {
		return p.Src != ip && strings.HasPrefix(p.Payload, tag)
	})
}

// selectedPodsAwayFrom are the example's selected pods on other nodes than those given.
func selectedPodsAwayFrom(ex example, nodes ...*topology.Node) []*cluster.Pod {
	var out []*cluster.Pod
	for _, p := range []*cluster.Pod{ex.aliceGW, ex.paul, ex.rack2} {
		if p != nil && !slices.Contains(nodes, p.Node) {
			out = append(out, p)
		}
	}
	return out
}

// standbyOf is the node the gateway's status names as ip's standby.
func standbyOf(t testing.TB, c *cluster.Cluster, ip netip.Addr) *topology.Node {
	t.Helper()
	g, err := c.Net.NetworkingV1().NetworkGatewayGroups("kube-system").Get(context.Background(), "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node(g.Status.Standbys[ip.String()])
	if n == nil {
		t.Fatalf("the gateway names no standby for %s: %v", ip, g.Status.Standbys)
	}
	return n
}

// copied waits until the holder's copy to standby has the streams: a second after the
// last one opened (a copy is InSync only while nothing older than half a second waits for
// an ack), the policy's view shows the copy InSync with at least their number of entries.
func (ss streams) copied(t testing.TB, c *cluster.Cluster, standby *topology.Node) {
	t.Helper()
	if wait := time.Until(ss[len(ss)-1].opened.Add(time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	standbyInSync(t, c, standby.Name, len(ss))
}

// standbyInSync waits until the policy's view (kubectl get egresspolicyviews) names
// standby with its copy in sync and at least entries entries, as the holder's agent
// reports them.
func standbyInSync(t testing.TB, c *cluster.Cluster, standby string, entries int) {
	t.Helper()
	err := eventually(10*time.Second, func() error {
		out, err := c.Kubectl(nil, "get", "egresspolicyviews", "egress", "-o", `jsonpath={.standby.node} {.standby.copy} {.standby.entries}`)
		if err != nil {
			return err
		}
		var node, state string
		var n int
		if _, err := fmt.Sscan(out, &node, &state, &n); err != nil {
			return fmt.Errorf("the view's standby is %q: %w", out, err)
		}
		if node != standby || state != "InSync" || n < entries {
			return fmt.Errorf("the view's standby is %q, want %s InSync with at least %d entries", out, standby, entries)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestConnectionsSurviveFailover: 20 long-lived TCP connections from selected pods on
// other nodes go through the gateway; its node fails hard (agent killed, link down). The
// standby, which kept a copy of the gateway's conntrack entries, is granted the IP, and
// every connection goes on, byte for byte, with the same egress IP and port: no reset.
func TestConnectionsSurviveFailover(t *testing.T) {
	c, ex := setupExample(t)
	w := watchFault(t, c, ex, "ctfail")
	standby := standbyOf(t, c, ex.egressIP)
	ss := openStreams(t, selectedPodsAwayFrom(ex, w.old), 20, "ctfail-s")
	for _, s := range ss {
		if s.source.Addr() != ex.egressIP {
			t.Fatalf("stream %s left as %s, want the egress IP %s", s.tag, s.source, ex.egressIP)
		}
	}
	ss.copied(t, c, standby)
	ss.flowing(t, 5*time.Second)
	fault := time.Now()
	gw := failAndResume(t, c, ex, w)
	if gw != standby.Name {
		t.Errorf("the IP went to %s, not its standby %s", gw, standby.Name)
	}
	ss.flowing(t, 15*time.Second)
	// The new holder copies to its own standby.
	standbyInSync(t, c, standbyOf(t, c, ex.egressIP).Name, len(ss))
	t.Logf("%d connections survived; stalls after the failure: %v (failover gap %s)", len(ss), ss.stallsAfter(fault), w.back.Sub(w.gapFrom).Round(time.Millisecond))
	if leaks := ss.leaked(c, w.mark, "ctfail-s", ex.egressIP); len(leaks) > 0 {
		t.Errorf("stream packets left with another source: %v", leaks[:min(5, len(leaks))])
	}
	w.check(t, c, ex.egressIP)
}

// TestConnectionsSurviveCordon: a planned move hands the conntrack entries over before
// the IP moves: every connection goes on.
func TestConnectionsSurviveCordon(t *testing.T) {
	c, ex := setupExample(t)
	w := watchFault(t, c, ex, "ctcordon")
	standby := standbyOf(t, c, ex.egressIP)
	ss := openStreams(t, selectedPodsAwayFrom(ex, w.old), 20, "ctcordon-s")
	ss.copied(t, c, standby)
	ss.flowing(t, 5*time.Second)
	move := time.Now()
	gw, gap, _, _ := cordonOnce(t, c, ex, w)
	if gw != standby.Name {
		t.Errorf("the IP went to %s, not its standby %s", gw, standby.Name)
	}
	ss.flowing(t, 15*time.Second)
	t.Logf("%d connections survived the cordon; stalls after it: %v (probe gap %s)", len(ss), ss.stallsAfter(move), gap.Round(time.Millisecond))
	if leaks := ss.leaked(c, w.mark, "ctcordon-s", ex.egressIP); len(leaks) > 0 {
		t.Errorf("stream packets left with another source: %v", leaks[:min(5, len(leaks))])
	}
}
