package certs

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func TestRotateCA(t *testing.T) {
	p := policy{caValidity: DefaultCAValidity, certValidity: DefaultCertValidity, dnsNames: testDNSNames}
	mint := func(at time.Time) keyPair {
		ca, err := newCA(at, DefaultCAValidity)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	current, older, expired := mint(epoch), mint(epoch.Add(-year)), mint(epoch.Add(-11*year))
	others := []keyPair{mint(epoch.Add(-2 * year)), mint(epoch.Add(-3 * year)), mint(epoch.Add(-4 * year))}
	known := []*x509.Certificate{current.cert, older.cert, expired.cert, others[0].cert, others[1].cert, others[2].cert}
	secret := func(key keyPair, cas ...keyPair) map[string][]byte {
		var bundle []byte
		for _, ca := range cas {
			bundle = append(bundle, ca.certPEM...)
		}
		return map[string][]byte{keyCACert: bundle, keyCAKey: key.keyPEM}
	}

	tests := []struct {
		name string
		data map[string][]byte
		at   time.Time
		// want is the bundle afterwards, by CA; nil means the data must not change.
		want []keyPair
		// wantNew says a new CA must lead the bundle, followed by want.
		wantNew    bool
		wantReason string
	}{
		{name: "nothing yet: a new CA alone", wantNew: true, wantReason: "no readable CA certificate", at: epoch},
		{name: "fresh CA: nothing to do", data: secret(current, current), at: epoch},
		{name: "fresh CA with an older one still valid: nothing to do", data: secret(current, current, older), at: epoch},
		{
			name: "a third of its life left: a new CA leads, the old one stays", data: secret(current, current),
			at: epoch.Add(7 * year), wantNew: true, want: []keyPair{current}, wantReason: "expires soon",
		},
		{
			name: "an expired CA behind the signing one: dropped", data: secret(current, current, expired),
			at: epoch, want: []keyPair{current}, wantReason: "dropping",
		},
		{
			name: "the same CA twice: kept once", data: secret(current, current, current),
			at: epoch, want: []keyPair{current}, wantReason: "dropping",
		},
		{
			name: "key does not match: a new CA leads, the old ones stay", data: secret(older, current),
			at: epoch, wantNew: true, want: []keyPair{current}, wantReason: "does not match",
		},
		{
			name: "key does not match a full bundle: the last CA falls off", data: secret(older, current, others[0], others[1], others[2]),
			at: epoch, wantNew: true, want: []keyPair{current, others[0], others[1]}, wantReason: "does not match",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.rotateCA(tt.data, tt.at)
			if err != nil {
				t.Fatalf("rotateCA: %v", err)
			}
			if tt.want == nil && !tt.wantNew {
				if got.data != nil {
					t.Errorf("rotateCA changed the data (%s), want no change", got.reason)
				}
				return
			}
			if got.data == nil {
				t.Fatalf("rotateCA left the data alone, want a change")
			}
			if !strings.Contains(got.reason, tt.wantReason) {
				t.Errorf("reason %q, want it to mention %q", got.reason, tt.wantReason)
			}
			bundle := bundleCAs(t, got.data[keyCACert])
			if tt.wantNew {
				if _, why := p.signer(got.data, tt.at); why != "" {
					t.Errorf("the new CA cannot sign: %s", why)
				}
				if contains(known, bundle[0]) {
					t.Errorf("the bundle is not led by a new CA")
				}
				bundle = bundle[1:]
			}
			if len(bundle) != len(tt.want) {
				t.Fatalf("bundle holds %d older CAs, want %d", len(bundle), len(tt.want))
			}
			for i, ca := range tt.want {
				if !bundle[i].Equal(ca.cert) {
					t.Errorf("bundle[%d] is not the CA expected there", i)
				}
			}
		})
	}
}
