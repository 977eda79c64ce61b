package topology

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/testenv"
)

// TestTopology builds the stage and checks it behaves like the plain cluster network the
// product is added to: pods reach the outside masqueraded to their node's IP, pods reach
// each other, the host reaches the control-plane namespace, and Close leaves nothing.
func TestTopology(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	topo, err := New(Config{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = topo.Close()
		}
	})
	n1, n2 := topo.Nodes[0], topo.Nodes[1]
	a, err := topo.AddPod(n1, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := topo.AddPod(n2, "b")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	tests := []struct {
		name string
		run  func() (string, error)
		want string
	}{
		{name: "TCP from a pod leaves masqueraded to its node's IP", run: func() (string, error) {
			src, err := a.WhoTCP(ctx, ExternalIP)
			return src.Addr().String(), err
		}, want: n1.IP.String()},
		{name: "UDP too", run: func() (string, error) {
			src, err := b.WhoUDP(ctx, ExternalIP2)
			return src.Addr().String(), err
		}, want: n2.IP.String()},
		{name: "ICMP to the external host", run: func() (string, error) { return "ok", a.Ping(ExternalIP) }, want: "ok"},
		{name: "pods on different nodes reach each other with their own IPs", run: func() (string, error) { return "ok", a.Ping(b.IP) }, want: "ok"},
		{name: "the host reaches the control-plane namespace", run: func() (string, error) {
			ln, err := Listen(topo.Control, "tcp4", ControlIP.String()+":0")
			if err != nil {
				return "", err
			}
			defer ln.Close()
			go func() {
				if c, err := ln.Accept(); err == nil {
					c.Write([]byte("hi"))
					c.Close()
				}
			}()
			c, err := net.DialTimeout("tcp4", ln.Addr().String(), 2*time.Second)
			if err != nil {
				return "", err
			}
			defer c.Close()
			buf := make([]byte, 2)
			_, err = c.Read(buf)
			return string(buf), err
		}, want: "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.run()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}

	t.Run("the sniffer saw pod traffic with the node's IP and nothing with a pod IP", func(t *testing.T) {
		pkts := topo.External.Packets(nil)
		if len(pkts) == 0 {
			t.Fatal("the sniffer recorded nothing")
		}
		for _, p := range pkts {
			if PodSupernet.Contains(p.Src) {
				t.Errorf("a pod IP reached the outside: %s", p)
			}
		}
	})

	t.Run("network policy on the node drops", func(t *testing.T) {
		if err := n1.DenyEgress(a.IP, ExternalNet); err != nil {
			t.Fatal(err)
		}
		if _, err := a.WhoUDP(ctx, ExternalIP); err == nil {
			t.Error("the denied pod still reached the external host")
		}
		if err := n1.ClearPolicy(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.WhoUDP(ctx, ExternalIP); err != nil {
			t.Errorf("after clearing the policy: %v", err)
		}
	})

	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), topo.ID+"-") {
			t.Errorf("namespace %s left after Close", e.Name())
		}
	}
	if _, err := net.InterfaceByName(topo.HostLink); err == nil {
		t.Errorf("host link %s left after Close", topo.HostLink)
	}
}

// TestTwoRacks: with a second rack, its node has an address on the other /25, pods on
// the two racks reach each other through the router with their own IPs, a rack-2 pod
// leaves masqueraded to its node's IP, and the host, on rack 2, still reaches the
// control-plane namespace on rack 1.
func TestTwoRacks(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	topo, err := New(Config{Nodes: 1, Rack2Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = topo.Close() })
	n1, n2 := topo.Nodes[0], topo.Nodes[1]
	if n1.Rack != 1 || !Rack1.Contains(n1.IP) || n2.Rack != 2 || !Rack2.Contains(n2.IP) {
		t.Fatalf("node1 %s in rack %d, node2 %s in rack %d", n1.IP, n1.Rack, n2.IP, n2.Rack)
	}
	a, err := topo.AddPod(n1, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := topo.AddPod(n2, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(b.IP); err != nil {
		t.Errorf("rack 1 to rack 2, pod to pod: %v", err)
	}
	if src, err := b.WhoUDP(context.Background(), ExternalIP); err != nil || src.Addr() != n2.IP {
		t.Errorf("a rack-2 pod reached the outside as %s (%v), want its node's %s", src, err, n2.IP)
	}
	if out, err := Exec(topo.Control, "ping", "-c", "1", "-W", "2", HostIP.String()); err != nil {
		t.Errorf("the control-plane host cannot reach the host's leg on rack 2: %v: %s", err, out)
	}
}
