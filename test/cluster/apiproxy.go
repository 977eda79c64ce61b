package cluster

import (
	"errors"
	"fmt"
	"net/url"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// APIPort is where the nodes reach the API server: topology.ControlIP:APIPort.
const APIPort = 6443

// apiProxy makes kube-apiserver reachable from the nodes' namespaces, at
// topology.ControlIP:APIPort inside the control-plane namespace.
type apiProxy struct {
	*topology.TCPProxy
	addr string
}

func startAPIProxy(ns, host string) (*apiProxy, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("%s:%d", topology.ControlIP, APIPort)
	p, err := topology.StartTCPProxy(ns, addr, u.Host)
	if err != nil {
		return nil, err
	}
	return &apiProxy{TCPProxy: p, addr: addr}, nil
}

func (p *apiProxy) close() { p.Close() }

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
