package nodeagent

import (
	"context"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	netv1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	v1listers "github.com/egressgw/egressgw/apiserver/client/listers/networking/v1"
	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// directChannel is the agent's side of the direct channel to the controller's leader: UDP
// beats that the leader answers, and the reads that skip the informers when the answers
// show them behind.
type directChannel struct {
	beats *beater
	reads *directReader
	// publish writes the agent's heartbeat keys, so the leader can answer its beats.
	publish func(context.Context) error
}

func (d *directChannel) start(ctx context.Context, node string) {
	// The leader answers only beats under a published key: an agent's first beats go out
	// once its key is in its NetworkGatewayNode status, or, if that write fails, after
	// the first report writes it.
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	if err := d.publish(pctx); err != nil {
		klog.ErrorS(err, "Publishing the heartbeat key; the first report publishes it", "node", node)
	}
	cancel()
	go d.reads.run(ctx)
	go func() {
		if err := d.beats.run(ctx); err != nil {
			klog.ErrorS(err, "UDP heartbeats stopped; renewing the Lease instead", "node", node)
		}
	}()
}

// directReader reads the node's grants, or the leader's Lease, straight from the API
// server when the heartbeats show the informers behind: after an API server restart
// they reconnect with a backoff of seconds, and a failover must not wait for it. A read
// asked for too soon after the last one is skipped: the next heartbeat answer asks again.
// The grants are read at most every 200 ms; the Lease at most every 250 ms, slowing down
// to every 10 s while it names the same holder (the leader may just be unreachable).
type directReader struct {
	reads directReads
	// grants and leader ask for a read; neither blocks.
	grants, leader chan struct{}
	// newer is called when the grants read are newer than the informer's.
	newer func()
	m     *metrics
}

func newDirectReader(reads directReads, newer func(), m *metrics) *directReader {
	return &directReader{reads: reads, grants: make(chan struct{}, 1), leader: make(chan struct{}, 1), newer: newer, m: m}
}

// askGrants and askLeader ask for a read, without blocking.
func (d *directReader) askGrants() { signal(d.grants) }
func (d *directReader) askLeader() { signal(d.leader) }

func (d *directReader) run(ctx context.Context) {
	grants := pace{every: 200 * time.Millisecond}
	leader := pace{every: 250 * time.Millisecond}
	read := func(p *pace, object string, do func(context.Context) (bool, error)) bool {
		if !p.due() {
			return false
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		changed, err := do(rctx)
		d.m.directReads.WithLabelValues(object, outcome(err)).Inc()
		return changed
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.grants:
			if read(&grants, "grants", d.reads.ReadGrants) {
				d.newer()
			}
		case <-d.leader:
			if read(&leader, "leader", d.reads.ReadLeader) {
				leader.every = 250 * time.Millisecond
			} else {
				leader.every = min(2*leader.every, 10*time.Second)
			}
		}
	}
}

// pace lets something happen at most once per every.
type pace struct {
	every time.Duration
	last  time.Time
}

func (p *pace) due() bool {
	if time.Since(p.last) < p.every {
		return false
	}
	p.last = time.Now()
	return true
}

func outcome(err error) string {
	if err != nil {
		return "failed"
	}
	return "ok"
}

// ownNode is this node's NetworkGatewayNode, whose spec grants the node its floating IPs:
// the informer's, or a newer one read directly.
type ownNode struct {
	list   v1listers.NetworkGatewayNodeLister
	client versioned.Interface
	name   string

	mu     sync.Mutex
	direct *netv1.NetworkGatewayNode // read straight from the API server; used while newer
}

func (o *ownNode) get() *netv1.NetworkGatewayNode {
	own, err := o.list.NetworkGatewayNodes(networking.NodeNamespace).Get(o.name)
	if err != nil {
		own = nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.direct != nil && (own == nil || o.direct.Generation > own.Generation) {
		return o.direct
	}
	return own
}

// generation is the generation of this node's grants; 0 if none.
func (o *ownNode) generation() int64 {
	if own := o.get(); own != nil {
		return own.Generation
	}
	return 0
}

// read reads the NetworkGatewayNode from the API server, and reports whether it is newer
// than what the agent had.
func (o *ownNode) read(ctx context.Context) (bool, error) {
	before := o.generation()
	own, err := o.client.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace).Get(ctx, o.name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	o.mu.Lock()
	o.direct = own
	o.mu.Unlock()
	return own.Generation > before, nil
}

// leaderLease is the controller's leader election Lease, whose holder names the address
// heartbeats go to: the informer's, or a newer one read directly.
type leaderLease struct {
	list            coordinationlisters.LeaseLister
	client          kubernetes.Interface
	namespace, name string

	mu     sync.Mutex
	direct *coordinationv1.Lease // read straight from the API server; used while newer
}

// leader is where the leader takes heartbeats and the key it answers with, as its Lease's
// holder identity names them.
func (l *leaderLease) leader() (hb.Leader, bool) {
	var lease *coordinationv1.Lease
	if leases, err := l.list.List(labels.Everything()); err == nil {
		for _, x := range leases {
			if x.Name == l.name {
				lease = x
			}
		}
	}
	l.mu.Lock()
	if newer(l.direct, lease) {
		lease = l.direct
	}
	l.mu.Unlock()
	if lease == nil || lease.Spec.HolderIdentity == nil {
		return hb.Leader{}, false
	}
	leader, err := hb.ParseLeaderIdentity(*lease.Spec.HolderIdentity)
	return leader, err == nil
}

// read reads the Lease from the API server, and reports whether its holder differs from
// the one the agent sent heartbeats to.
func (l *leaderLease) read(ctx context.Context) (bool, error) {
	before, _ := l.leader()
	lease, err := l.client.CoordinationV1().Leases(l.namespace).Get(ctx, l.name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	l.mu.Lock()
	l.direct = lease
	l.mu.Unlock()
	after, _ := l.leader()
	return after != before, nil
}

// newer says whether a is a later version of the Lease than b.
func newer(a, b *coordinationv1.Lease) bool {
	if a == nil {
		return false
	}
	if b == nil {
		return true
	}
	av, aerr := strconv.ParseUint(a.ResourceVersion, 10, 64)
	bv, berr := strconv.ParseUint(b.ResourceVersion, 10, 64)
	return aerr == nil && berr == nil && av > bv
}
