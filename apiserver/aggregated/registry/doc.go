// Package registry holds the REST storage of the egress.egressgw.io resources, one
// package per resource: plain structs over the computed views, with no etcd behind them.
// Every storage checks, besides the RBAC on its own resource, that the user may get the
// pods it would describe: a view or preview of a pod says as much as the pod does.
package registry
