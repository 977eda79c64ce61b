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
// Each node routes the other nodes' pod subnets to them and masquerades pod traffic that
// leaves the segment with nft, as a plain CNI does; network policy is an nft filter chain
// on the node. The host's own network namespace gets one veth into the segment
// (198.51.100.254) so that the API server, which runs on the host, can reach servers in
// the namespaces. Nothing is routed beyond the namespaces.
//
// Only one topology exists on a machine at a time (a lock file), every name carries the
// process id, and Close deletes every namespace; New first deletes those of dead processes.
package topology
