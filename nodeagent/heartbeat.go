package nodeagent

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// heartbeat renews the node's Lease, and with it the node's grant: the node may hold its
// floating IPs until the lease duration after the start of its last successful renewal,
// as measured on this machine's monotonic clock. The controller declares the node Down
// only a lease duration plus a grace after it *saw* that renewal, which is later, so by
// then this node has dropped its IPs.
type heartbeat struct {
	leases   leaseClient
	node     string
	duration time.Duration // a whole number of seconds, as a Lease carries it
	now      func() time.Duration

	mu     sync.Mutex
	lease  *coordinationv1.Lease
	expiry time.Duration // on the monotonic clock; zero until the first renewal
	// vouched is when the leader last vouched for the grants over the direct channel,
	// and written when the Lease was last written; both monotonic.
	vouched, written time.Duration
}

// extend extends the grant to the lease duration after start, the moment the request
// that earned it was sent. It reports whether the grant had lapsed before.
func (h *heartbeat) extend(start time.Duration) (lapsed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.extendLocked(start)
}

func (h *heartbeat) extendLocked(start time.Duration) (lapsed bool) {
	lapsed = h.expiry <= h.now()
	h.expiry = max(h.expiry, start+h.duration)
	return lapsed
}

// vouch notes an answer over the direct channel that extended the grant from start.
func (h *heartbeat) vouch(start time.Duration) (lapsed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.vouched = h.now()
	return h.extendLocked(start)
}

// lastVouched and lastWritten are when the leader last vouched, and when the Lease was
// last written; zero if never.
func (h *heartbeat) lastVouched() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.vouched
}

func (h *heartbeat) lastWritten() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.written
}

// grantExpiry is when the grant lapses, on the monotonic clock; zero if there is none.
func (h *heartbeat) grantExpiry() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.expiry
}

// renew writes one renewal. Only a renewal the API server acknowledged extends the grant,
// and the extension counts from before the request was sent. Unless mayRevive, it only
// keeps a grant that was still valid when the request was sent: a node that lost its
// grant takes IPs again only on the leader's word (a vouched heartbeat answer), since its
// cached grants may be older than the moves the controller made while it was Down.
func (h *heartbeat) renew(ctx context.Context, mayRevive bool) error {
	start := h.now()
	h.mu.Lock()
	lease := h.lease
	h.mu.Unlock()
	var err error
	if lease == nil {
		lease, err = h.leases.Get(ctx, hb.LeaseName(h.node))
		if apierrors.IsNotFound(err) {
			lease, err = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
				Name: hb.LeaseName(h.node), Namespace: networking.NodeNamespace,
			}}, nil
		}
		if err != nil {
			return fmt.Errorf("reading heartbeat Lease: %w", err)
		}
	}
	lease = lease.DeepCopy()
	hb.StampLease(lease, h.node, h.duration)
	if lease.ResourceVersion == "" {
		lease, err = h.leases.Create(ctx, lease)
	} else {
		lease, err = h.leases.Update(ctx, lease)
	}
	h.mu.Lock()
	if err != nil {
		h.lease = nil // Read it again next time: someone else may have written it.
		h.mu.Unlock()
		return fmt.Errorf("renewing heartbeat Lease: %w", err)
	}
	h.lease, h.written = lease, start
	live := h.expiry > start
	h.mu.Unlock()
	if live || mayRevive {
		h.extend(start)
	}
	return nil
}

// apiLeases are the heartbeat Leases in the API server.
type apiLeases struct {
	c coordinationclient.LeaseInterface
}

var _ leaseClient = apiLeases{}

func (l apiLeases) Get(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	return l.c.Get(ctx, name, metav1.GetOptions{})
}

func (l apiLeases) Create(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return l.c.Create(ctx, lease, metav1.CreateOptions{})
}

func (l apiLeases) Update(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return l.c.Update(ctx, lease, metav1.UpdateOptions{})
}

// start starts the direct channel, if there is one, and renews once before the first
// pass: a restarted agent on a gateway node keeps its IPs only if it can show a fresh
// grant; without one, the first pass drops them. With the direct channel, the fresh grant
// is the leader's vouched answer (the Lease write creates the Lease, and cannot revive a
// grant). It gives up after half a lease, and holds no IPs until a renewal succeeds.
func (k *grantKeeper) start(ctx context.Context) {
	if k.direct != nil {
		k.direct.start(ctx, k.beat.node)
	}
	var err error
	deadline := time.Now().Add(k.timing.LeaseDuration / 2)
	for attempt, written := 1, false; ; attempt++ {
		if !written {
			rctx, cancel := context.WithTimeout(ctx, k.timing.RenewInterval)
			err = k.beat.renew(rctx, k.direct == nil)
			cancel()
			written = err == nil
		}
		vouched := k.direct == nil || k.beat.lastVouched() != 0
		if err == nil && vouched || time.Now().After(deadline) || attempt >= 40 {
			if err != nil || !vouched {
				klog.ErrorS(err, "No heartbeat answered yet; holding no floating IPs until one is", "node", k.beat.node)
			}
			return
		}
		time.Sleep(k.timing.RenewInterval / 4)
	}
}

// renewLoop renews the Lease until ctx ends, and after each renewal has the kernel's
// copies of the grant extended. While the leader vouches for the grants over UDP, the
// Lease is written only every LeaseRefresh, which keeps the API server's load at a write
// per node every few seconds; as soon as the answers stop, the Lease is renewed every
// RenewInterval again.
func (k *grantKeeper) renewLoop(ctx context.Context) {
	t := time.NewTicker(k.timing.RenewInterval)
	defer t.Stop()
	for {
		now := k.beat.now()
		answered := k.direct != nil && k.beat.lastVouched() != 0 && now-k.beat.lastVouched() < k.timing.RenewInterval
		if !answered || now-k.beat.lastWritten() >= k.timing.LeaseRefresh {
			rctx, cancel := context.WithTimeout(ctx, k.timing.RenewInterval)
			lapsed := k.left() <= 0
			err := k.beat.renew(rctx, k.direct == nil)
			cancel()
			k.m.leaseWrites.Inc()
			if err != nil {
				k.m.renewFailures.Inc()
				klog.ErrorS(err, "Heartbeat renewal failed; floating IPs are dropped when the grant lapses",
					"node", k.beat.node, "grantLeft", k.left())
			} else {
				k.extended(lapsed)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
