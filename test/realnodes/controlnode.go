package realnodes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// EgressProxy carries kube-apiserver's traffic to the cluster (webhooks, aggregated API
// servers, kubelets) into the control-plane node's network namespace, where kube-proxy
// runs and the pod subnets are routed, as a control-plane node of a real cluster has them.
// kube-apiserver runs on the host's loopback, so it reaches the namespace the way a
// Konnectivity setup reaches a cluster network: its egress selector sends the "cluster"
// traffic as HTTP CONNECT over a unix socket, and this proxy dials from the namespace.
type EgressProxy struct {
	// Config is the EgressSelectorConfiguration file for kube-apiserver's
	// --egress-selector-config-file (controlplane.Options.EgressSelectorConfig).
	Config string

	dir string
	ns  string
	ln  net.Listener
	wg  sync.WaitGroup
}

// StartEgressProxy listens on a unix socket in a fresh folder and dials, for each
// CONNECT, from topo's control-plane namespace.
func StartEgressProxy(topo *topology.Topology) (_ *EgressProxy, err error) {
	dir, err := os.MkdirTemp("", "egressgw-egress-")
	if err != nil {
		return nil, err
	}
	p := &EgressProxy{dir: dir, ns: topo.Control, Config: filepath.Join(dir, "egress-selector.yaml")}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	sock := filepath.Join(dir, "proxy.sock")
	config := fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds: {udsName: %s}
`, sock)
	if err := os.WriteFile(p.Config, []byte(config), 0o600); err != nil {
		return nil, err
	}
	if p.ln, err = net.Listen("unix", sock); err != nil {
		return nil, err
	}
	p.wg.Go(func() {
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	})
	return p, nil
}

// serve answers one CONNECT and then copies bytes both ways until either side closes.
func (p *EgressProxy) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if req.Method != http.MethodConnect {
		fmt.Fprintf(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	u, err := topology.Dial(ctx, p.ns, "tcp4", req.Host)
	cancel()
	if err != nil {
		fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer u.Close()
	if _, err := fmt.Fprintf(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, br); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}

// Close stops accepting and removes the socket and the configuration.
func (p *EgressProxy) Close() {
	if p.ln != nil {
		p.ln.Close()
		p.wg.Wait()
	}
	_ = os.RemoveAll(p.dir)
}

// controlNode makes topo's control-plane namespace a control-plane node's network: a
// default route through the router, routes to every node's pod subnet through that node, as a node's CNI routes them, and kube-proxy
// (nftables), so that what kube-apiserver dials there (through the EgressProxy) reaches
// Service IPs. kube-proxy's files are in a fresh folder; stop removes them.
type controlNode struct {
	dir       string
	kubeProxy *process
}

func startControlNode(cp *controlplane.ControlPlane, topo *topology.Topology, bin, server string) (_ *controlNode, err error) {
	// A default route, as the nodes have: a connect to a Service IP needs a route before
	// kube-proxy's output hook rewrites its destination.
	if _, err := topology.Exec(topo.Control, "ip", "route", "add", "default", "via", topology.RouterIP.String()); err != nil {
		return nil, fmt.Errorf("the control-plane namespace's default route: %w", err)
	}
	for _, n := range topo.Nodes {
		if n.Rack != 1 {
			continue // through the router, by the default route
		}
		if _, err := topology.Exec(topo.Control, "ip", "route", "add", n.PodCIDR.String(), "via", n.IP.String()); err != nil {
			return nil, fmt.Errorf("routing %s to %s in the control-plane namespace: %w", n.PodCIDR, n.Name, err)
		}
	}
	dir, err := os.MkdirTemp("", "egressgw-cp-node-")
	if err != nil {
		return nil, err
	}
	c := &controlNode{dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.stop())
		}
	}()
	kubeconfig := filepath.Join(dir, "kube-proxy.kubeconfig")
	if err := cp.UserKubeconfig(kubeconfig, "system:kube-proxy", nil, server); err != nil {
		return nil, err
	}
	config := kubeProxyConfig("control-plane", kubeconfig, topology.PodSupernet.String())
	if err := os.WriteFile(filepath.Join(dir, "kube-proxy-config.yaml"), []byte(config), 0o644); err != nil {
		return nil, err
	}
	c.kubeProxy, err = startIn(topo.Control, dir, "kube-proxy", []string{filepath.Join(bin, "kube-proxy"),
		"--config=" + filepath.Join(dir, "kube-proxy-config.yaml"), "--v=2"})
	return c, err
}

func (c *controlNode) stop() error {
	err := c.kubeProxy.stop(10 * time.Second)
	return errors.Join(err, os.RemoveAll(c.dir))
}
