// Package e2e is the end-to-end suite: the whole system on the harness's local multi-node
// cluster, as `make run HARNESS=1` starts it (package cluster), driven the way a user drives it, with kubectl,
// and checked with real packets seen by the external host. It starts one cluster for the
// package and every test leaves it as it found it. The tests need root; under CI=true
// they fail instead of skipping.
package e2e
