package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"time"
)

// testCA is a throwaway certificate authority for one control plane's certificates: its
// front proxy's, and kube-apiserver's serving certificate.
type testCA struct {
	cert                *x509.Certificate
	der                 []byte
	key                 *ecdsa.PrivateKey
	notBefore, notAfter time.Time
}

// newTestCA makes a CA named cn, valid from notBefore to notAfter, as are the
// certificates it issues.
func newTestCA(cn string, notBefore, notAfter time.Time) (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &testCA{cert: cert, der: der, key: key, notBefore: notBefore, notAfter: notAfter}, nil
}

// issue signs a certificate for a new key, with template's names and usages and the CA's
// validity: it returns the certificate and the key (SEC 1), both DER.
func (ca *testCA) issue(template x509.Certificate) (certDER, keyDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	template.SerialNumber = big.NewInt(2)
	template.NotBefore, template.NotAfter = ca.notBefore, ca.notAfter
	template.KeyUsage = x509.KeyUsageDigitalSignature
	if certDER, err = x509.CreateCertificate(rand.Reader, &template, ca.cert, &key.PublicKey, ca.key); err != nil {
		return nil, nil, err
	}
	keyDER, err = x509.MarshalECPrivateKey(key)
	return certDER, keyDER, err
}
