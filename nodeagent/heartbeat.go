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

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// heartbeat renews the node's Lease, and with it the node's grant: the node may hold its
// floating IPs until the lease duration after the start of its last successful renewal,
// as measured on this machine's monotonic clock. The controller declares the node Down
// only a lease duration plus a grace after it *saw* that renewal, which is later, so by
// then this node has dropped its IPs.
type heartbeat struct {
	leases   coordinationclient.LeasesGetter
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
		lease, err = h.leases.Leases(networking.NodeNamespace).Get(ctx, hb.LeaseName(h.node), metav1.GetOptions{})
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
		lease, err = h.leases.Leases(networking.NodeNamespace).Create(ctx, lease, metav1.CreateOptions{})
	} else {
		lease, err = h.leases.Leases(networking.NodeNamespace).Update(ctx, lease, metav1.UpdateOptions{})
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
