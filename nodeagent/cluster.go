package nodeagent

import (
	"context"
	"net/netip"

	coordinationv1 "k8s.io/api/coordination/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// The cluster, behind the narrow interfaces the agent needs, as kernel.go has the kernel.
// The real implementations are caches (the informers, and the reads that skip them),
// apiLeases and apiStatusWriter, all built from the clients in run.go; the unit tests
// use the fakes of fakes_test.go.

// api is what an agent reads and writes of the cluster.
type api struct {
	view   clusterView
	direct directReads // read only with the direct channel to the leader
	leases leaseClient
	status statusWriter
}

// clusterView is what the agent reads of the cluster, as the informers have it.
type clusterView interface {
	// Start starts the informers, calling onChange on every change they see, and waits
	// until they have synced.
	Start(ctx context.Context, onChange func()) error
	// Snapshot is what a pass decides from.
	Snapshot() (snapshot, error)
	// GrantGeneration is the generation of this node's grants; 0 if none.
	GrantGeneration() int64
	// Leader is where the controller's leader takes heartbeats, and the key it answers
	// with, if they are known.
	Leader() (hb.Leader, bool)
}

// directReads read straight from the API server, for when the informers are behind.
type directReads interface {
	// ReadGrants reads this node's grants, and says whether they are newer than the
	// agent had.
	ReadGrants(ctx context.Context) (newer bool, err error)
	// ReadLeader reads the controller's leader election Lease, and says whether it names
	// another leader.
	ReadLeader(ctx context.Context) (changed bool, err error)
}

// leaseClient reads and writes the heartbeat Leases in networking.NodeNamespace.
type leaseClient interface {
	Get(ctx context.Context, name string) (*coordinationv1.Lease, error)
	Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
}

// statusWriter writes the node's NetworkGatewayNode status.
type statusWriter interface {
	Report(ctx context.Context, s nodeStatus) error
	// PublishKeys writes the heartbeat keys alone, creating the NetworkGatewayNode if
	// needed: an agent publishes its new key before the first pass, so that the leader
	// can vouch for its grants by then.
	PublishKeys(ctx context.Context, keys []string) error
}

// nodeStatus is what the node's NetworkGatewayNode status says.
type nodeStatus struct {
	Interfaces []Interface
	// Held are the floating IPs the node holds, matching the grants of
	// ObservedGeneration.
	Held               []netip.Addr
	ObservedGeneration int64
	Ready              bool
	// Reason is the Ready condition's: Programmed, CapacityExceeded or DataplaneError.
	Reason  string
	Message string
	// CapacityExceeded names the maps and id spaces that refuse entries, their limits
	// and what they refuse; empty when everything fits.
	CapacityExceeded string
	// HeartbeatKeys are the agent's public heartbeat keys, newest first.
	HeartbeatKeys []string
	// Served are the addresses of the node's pods outside its pod CIDRs, for the gateways.
	Served []netip.Prefix
	// Uncovered names the pods the backstop or the gateways' source filter do not cover,
	// and why; empty when every pod is covered.
	Uncovered string
	// Unreachable names the selected pods whose egress IP is on no subnet of the node's
	// interfaces and that the node has no route to, and why; empty when there are none.
	Unreachable string
	// Redirected are the pods ("namespace/name") whose interface carries another
	// program: their selected traffic is dropped.
	Redirected []string
	// Copies say how fresh each standby's copy of the node's connections is.
	Copies []v1.StandbyCopy
}
