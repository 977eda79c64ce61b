package certs

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the certificate Secret. ca.crt is the whole trust bundle, exactly what is
// published as caBundle: the CA that signs new certificates first, then older CAs that
// stay trusted until they expire.
const (
	keyCACert  = "ca.crt"
	keyCAKey   = "ca.key"
	keyTLSCert = corev1.TLSCertKey
	keyTLSKey  = corev1.TLSPrivateKeyKey
)

// maxBundle caps the CAs kept in ca.crt. Rotation on schedule needs two; the cap only
// bites when something keeps breaking the Secret, which must not grow it without bound.
const maxBundle = 4

// policy decides, from the Secret's data and the time alone, what the data should be.
type policy struct {
	caValidity, certValidity time.Duration
	dnsNames                 []string
	ips                      []net.IP
}

// step is one decision about the Secret's data.
type step struct {
	// data is the Secret's new data; nil keeps it as it is.
	data map[string][]byte
	// reason says why data changed, for the log.
	reason string
	// waiting is set when the serving certificate should move to the signing CA but may
	// not yet, because kube-apiserver may not trust that CA yet.
	waiting bool
}

// rotateCA makes sure data holds a signing CA with more than a third of its life left,
// and drops expired or repeated CAs from the bundle. A replaced CA stays in the bundle, behind the
// new one, until it expires: certificates it signed are still being served.
func (p policy) rotateCA(data map[string][]byte, now time.Time) (step, error) {
	bundle, _ := parseCertificates(data[keyCACert])
	keep := stillTrusted(bundle, now)
	_, why := p.signer(data, now)
	if why == "" {
		if len(keep) == len(bundle) {
			return step{}, nil
		}
		return step{
			data:   with(data, map[string][]byte{keyCACert: encodeCertificates(keep...)}),
			reason: "dropping expired or repeated CAs from the bundle",
		}, nil
	}
	ca, err := newCA(now, p.caValidity)
	if err != nil {
		return step{}, err
	}
	bundle = append([]*x509.Certificate{ca.cert}, keep...)
	if len(bundle) > maxBundle {
		bundle = bundle[:maxBundle]
	}
	return step{
		data:   with(data, map[string][]byte{keyCACert: encodeCertificates(bundle...), keyCAKey: ca.keyPEM}),
		reason: "new CA: " + why,
	}, nil
}

// renewServing makes sure data holds a serving certificate that the bundle trusts, that
// covers every name, and that has more than a third of its life left. It issues one at
// once when the current one is unusable, because then there is no working state to
// protect. Moving a still-good certificate to a new CA happens only when mayChangeIssuer
// says the new CA has been published; until then the step is waiting.
func (p policy) renewServing(data map[string][]byte, now time.Time, mayChangeIssuer bool) (step, error) {
	ca, why := p.signer(data, now)
	if why != "" {
		return step{}, fmt.Errorf("no CA to sign the serving certificate with: %s", why)
	}
	leaf, err := trustedLeaf(data, now)
	var reason string
	switch {
	case err != nil:
		reason = fmt.Sprintf("serving certificate unusable: %v", err)
	case leaf.CheckSignatureFrom(ca.cert) != nil && !mayChangeIssuer:
		return step{waiting: true}, nil
	case leaf.CheckSignatureFrom(ca.cert) != nil:
		reason = "moving the serving certificate to the new CA"
	case expiring(leaf, now):
		reason = "serving certificate expires soon"
	case p.uncovered(leaf) != "":
		reason = fmt.Sprintf("serving certificate is not valid for %q", p.uncovered(leaf))
	default:
		return step{}, nil
	}
	pair, err := newServing(ca, p.dnsNames, p.ips, now, p.certValidity)
	if err != nil {
		return step{}, err
	}
	return step{
		data:   with(data, map[string][]byte{keyTLSCert: pair.certPEM, keyTLSKey: pair.keyPEM}),
		reason: reason,
	}, nil
}

// signer returns the CA in data that should sign new certificates, or why there is none.
func (p policy) signer(data map[string][]byte, now time.Time) (keyPair, string) {
	bundle, err := parseCertificates(data[keyCACert])
	if err != nil {
		return keyPair{}, fmt.Sprintf("no readable CA certificate: %v", err)
	}
	key, err := parsePrivateKey(data[keyCAKey])
	if err != nil {
		return keyPair{}, fmt.Sprintf("no readable CA key: %v", err)
	}
	ca := bundle[0]
	switch {
	case !ca.IsCA:
		return keyPair{}, "the first certificate of ca.crt is not a CA"
	case !matches(key, ca):
		return keyPair{}, "ca.key does not match the first certificate of ca.crt"
	case now.Before(ca.NotBefore):
		return keyPair{}, "the CA is not valid yet"
	case expiring(ca, now):
		return keyPair{}, "the CA expires soon"
	}
	return keyPair{cert: ca, key: key, certPEM: encodeCertificates(ca), keyPEM: data[keyCAKey]}, ""
}

// uncovered returns a configured name the certificate is not valid for, or "".
func (p policy) uncovered(leaf *x509.Certificate) string {
	for _, name := range p.dnsNames {
		if leaf.VerifyHostname(name) != nil {
			return name
		}
	}
	for _, ip := range p.ips {
		if leaf.VerifyHostname(ip.String()) != nil {
			return ip.String()
		}
	}
	return ""
}

// trustedLeaf returns the serving certificate in data if its key matches and the bundle in
// data trusts it for serving at now.
func trustedLeaf(data map[string][]byte, now time.Time) (*x509.Certificate, error) {
	pair, err := loadKeyPair(data)
	if err != nil {
		return nil, err
	}
	bundle, err := parseCertificates(data[keyCACert])
	if err != nil {
		return nil, err
	}
	if err := verify(pair.Leaf, pool(bundle), now); err != nil {
		return nil, err
	}
	return pair.Leaf, nil
}

// loadKeyPair parses the serving certificate and key in data.
func loadKeyPair(data map[string][]byte) (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(data[keyTLSCert], data[keyTLSKey])
	if err != nil {
		return nil, fmt.Errorf("reading %s and %s: %w", keyTLSCert, keyTLSKey, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", keyTLSCert, err)
		}
	}
	return &pair, nil
}

func verify(leaf *x509.Certificate, roots *x509.CertPool, now time.Time) error {
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// stillTrusted keeps, in order and once each, the CAs of bundle that have not expired.
func stillTrusted(bundle []*x509.Certificate, now time.Time) []*x509.Certificate {
	var keep []*x509.Certificate
	for _, c := range bundle {
		if !c.IsCA || !now.Before(c.NotAfter) || contains(keep, c) {
			continue
		}
		keep = append(keep, c)
	}
	return keep
}

func contains(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, have := range certs {
		if bytes.Equal(have.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// with returns a copy of data with set's keys overwritten; data itself is the caller's
// view of the Secret and must stay as read.
func with(data, set map[string][]byte) map[string][]byte {
	out := maps.Clone(data)
	if out == nil {
		out = map[string][]byte{}
	}
	maps.Copy(out, set)
	return out
}

// fingerprint identifies a certificate.
func fingerprint(c *x509.Certificate) [sha256.Size]byte { return sha256.Sum256(c.Raw) }
