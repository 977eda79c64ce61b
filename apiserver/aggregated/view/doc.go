// Package view keeps, in memory, what the aggregated API serves: the PodEgress of every
// pod and the EgressPolicyView of every policy, computed from the informer caches of
// pods, namespaces, nodes, policies, gateways, node reports and NetworkPolicies. It
// recomputes only the views a change can affect, and tells watchers which ones changed.
//
// Which pod egresses how is decided by package routing, never here: this package only
// feeds it, and lays its answers out as API objects.
package view
