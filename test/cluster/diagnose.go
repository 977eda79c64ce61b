package cluster

import (
	"fmt"
	"strings"

	"github.com/egressgw/egressgw/test/topology"
)

// Diagnose returns what a person debugging a failed dataplane test looks at first: each
// node's addresses, neighbours, rules, routes (the steering table's among them), nft
// counters, conntrack entries and the agent's dataplane counters; the router's
// neighbours; and which bridge port each MAC was learnt on (virtual MACs included).
func (c *Cluster) Diagnose() string {
	var b strings.Builder
	for _, n := range c.Topo.Nodes {
		fmt.Fprintf(&b, "===== %s (%s)\n", n.Name, n.IP)
		for _, args := range [][]string{
			{"ip", "-br", "addr"},
			{"ip", "neigh"},
			{"ip", "rule"},
			{"ip", "route", "show", "table", "all", "type", "unicast"},
			{"nft", "list", "table", "ip", "egressgw"},
			{"conntrack", "-L"},
		} {
			out, err := topology.Exec(n.NS, args...)
			fmt.Fprintf(&b, "--- %s\n%s", strings.Join(args, " "), out)
			if err != nil {
				fmt.Fprintf(&b, "(%v)\n", err)
			}
		}
		fmt.Fprintf(&b, "--- agent metrics\n%s", c.agentMetrics(n))
	}
	out, _ := topology.Exec(c.Topo.Router, "ip", "neigh")
	fmt.Fprintf(&b, "===== router neighbours\n%s", out)
	out, _ = topology.Exec(c.Topo.L2, "bridge", "fdb", "show", "br", "br0", "dynamic")
	fmt.Fprintf(&b, "===== bridge: learnt MACs\n%s", out)
	return b.String()
}

func (c *Cluster) agentMetrics(n *topology.Node) string {
	body, err := c.AgentMetrics(n)
	if err != nil {
		return err.Error() + "\n"
	}
	var keep []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "egressgw_") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n") + "\n"
}
