package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"time"
)

// switchGate holds back serving a certificate from a new CA until the bundle carrying that
// CA has been on every target for delay: kube-apiservers read caBundle through their own
// watches, so a write is not yet trust. It lives in memory only. A restarted replica
// starts its wait afresh, which delays a switch but never makes one early.
type switchGate struct {
	delay time.Duration
	// signer is the fingerprint of the signing CA last seen published, since when.
	signer [sha256.Size]byte
	since  time.Time
}

// published records that every target carries a bundle led by signer. A pass that had to
// patch a target restarts the wait: that target lacked the bundle until now.
func (g *switchGate) published(signer *x509.Certificate, patched bool, now time.Time) {
	fp := fingerprint(signer)
	if fp != g.signer || patched || g.since.IsZero() {
		g.signer, g.since = fp, now
	}
}

// openAt is when a certificate signed by signer may be served, or the zero time when no
// bundle led by signer has been seen published.
func (g *switchGate) openAt(signer *x509.Certificate) time.Time {
	if g.since.IsZero() || fingerprint(signer) != g.signer {
		return time.Time{}
	}
	return g.since.Add(g.delay)
}
