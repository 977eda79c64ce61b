package cluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// APIPort is where the nodes reach the API server: topology.ControlIP:APIPort.
const APIPort = 6443

// apiProxy makes kube-apiserver, which listens on the host's loopback, reachable from the
// nodes' namespaces: it listens inside the control-plane namespace and copies bytes to the
// loopback address. TLS passes through untouched. A node cut off from the control-plane
// address (a partition) is cut off from the API server, as in a real cluster.
type apiProxy struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func startAPIProxy(ns, host string) (*apiProxy, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, err
	}
	target := u.Host
	addr := fmt.Sprintf("%s:%d", topology.ControlIP, APIPort)
	ln, err := topology.Listen(ns, "tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the API proxy on %s: %w", addr, err)
	}
	p := &apiProxy{addr: addr, ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.pipe(c, target)
			}()
		}
	}()
	return p, nil
}

func (p *apiProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *apiProxy) pipe(c net.Conn, target string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	p.track(c, true)
	p.track(u, true)
	defer p.track(c, false)
	defer p.track(u, false)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}

// DropConnections closes every proxied connection, as an API server restart does.
func (p *apiProxy) DropConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *apiProxy) close() {
	p.ln.Close()
	p.DropConnections()
	p.wg.Wait()
}

// writeNodeKubeconfig writes a kubeconfig that reaches the API server through the proxy.
// The API server's certificate names localhost, so that is the name the nodes verify.
func writeNodeKubeconfig(cp *controlplane.ControlPlane, proxy, path string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(cp.Kubeconfig)
	if err != nil {
		return "", err
	}
	if len(cfg.Clusters) == 0 {
		return "", errors.New("the administrator's kubeconfig names no cluster")
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + proxy
		c.TLSServerName = "localhost"
	}
	return path, clientcmd.WriteToFile(*cfg, path)
}
