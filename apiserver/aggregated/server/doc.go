// Package server is the egress.egressgw.io aggregated API server: options, config and
// the running server, in sample-apiserver's chain (Options → Validate → Complete →
// Config → New). It owns the informers that feed package view, the REST storage of
// package registry, and the TLS certificate package certs keeps for it. It has no etcd:
// everything it serves is computed from the caches, the way metrics-server does.
package server
