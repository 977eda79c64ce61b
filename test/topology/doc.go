// Package topology builds a small network out of network namespaces, the stage on which
// the dataplane, the end-to-end suite and the demo run real packets:
//
//	                    198.51.100.0/24 (one L2 segment: a bridge in its own netns)
//	┌────────┬─────────┬─────────┬──────────────┬────────────────┐
//	node1    node2     node3     cp (.2)        router (.1) ── 203.0.113.1/24 ── external (.10)
//	.11      .12       .13       API proxy,     forwards          TCP/UDP servers that report
//	pods     pods      pods      aggregated     nothing else      the source they saw; a sniffer
//	198.18.1 198.18.2  198.18.3  API server                       that records every packet
//
// With Config.Rack2Nodes, a second rack: the segment splits into 198.51.100.0/25 (rack 1:
// everything above, the floating IPs among them) and 198.51.100.128/25 (rack 2: a second
// bridge, the router's .129, nodes at 198.51.100.(138+i), and the host's leg), joined only
// by the router, which routes every node's pod subnet to it.
//
// Each node routes the pod subnets of the other nodes of its rack to them, and
// masquerades pod traffic that leaves the segment with nft, as a plain CNI does; network
// policy is an nft filter chain on the node. The host's own network namespace gets one veth into the segment
// (198.51.100.254) so that the API server, which runs on the host, can reach servers in
// the namespaces. Nothing is routed beyond the namespaces.
//
// Only one topology exists on a machine at a time (a lock file), every name carries the
// process id, and Close deletes every namespace; New first deletes those of dead processes.
package topology
