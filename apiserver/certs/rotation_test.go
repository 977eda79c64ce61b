package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

// TestCARotationNeverBreaksTrust lives through eleven years of monthly checks, past one
// CA rotation and the old CA's expiry, and checks after every pass, and before each next
// one, that everything kube-apiserver reads trusts the certificate being served.
func TestCARotationNeverBreaksTrust(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t)
	f.ensure(t, m)
	firstCA := bundleCAs(t, m.CABundle())[0]

	// publishedAt is when each CA was first in every published bundle.
	publishedAt := map[[sha256.Size]byte]time.Time{}
	notePublished := func() {
		count := map[[sha256.Size]byte]int{}
		published := f.published(t)
		for _, bundle := range published {
			for _, ca := range bundleCAs(t, bundle) {
				count[fingerprint(ca)]++
			}
		}
		for fp, n := range count {
			if _, seen := publishedAt[fp]; !seen && n == len(published) {
				publishedAt[fp] = f.clock.Now()
			}
		}
	}
	issuer := fingerprint(firstCA)
	// check is run after every Ensure: the served certificate is trusted, and if it moved
	// to another CA, that CA had been published for at least the publish delay.
	check := func() {
		t.Helper()
		f.requireServedTrusted(t, m)
		notePublished()
		bundle := bundleCAs(t, m.CABundle())
		i := issuerIndex(served(t, m), bundle)
		if i < 0 {
			t.Fatalf("at %s: the served certificate's issuer is not in the bundle", f.clock.Now())
		}
		if now := fingerprint(bundle[i]); now != issuer {
			if waited := f.clock.Now().Sub(publishedAt[now]); waited < DefaultPublishDelay {
				t.Fatalf("at %s: switched to a CA published only %s ago", f.clock.Now(), waited)
			}
			issuer = now
		}
	}

	var switches, waits int
	prunedAt := time.Time{}
	for now := epoch.Add(30 * day); now.Before(epoch.Add(11 * year)); now = now.Add(30 * day) {
		f.clock.SetTime(now)
		f.requireServedTrusted(t, m) // still trusted at the new time, before any pass
		f.ensure(t, m)
		check()

		bundle := bundleCAs(t, m.CABundle())
		if issuerIndex(served(t, m), bundle) > 0 {
			waits++
			if len(bundle) != 2 {
				t.Fatalf("at %s: waiting on a bundle of %d CAs, want 2", now, len(bundle))
			}
			f.clock.Step(DefaultPublishDelay / 2)
			f.ensure(t, m)
			check()
			if issuerIndex(served(t, m), bundleCAs(t, m.CABundle())) != 1 {
				t.Fatalf("at %s: switched to the new CA before the publish delay was over", f.clock.Now())
			}
			f.clock.Step(DefaultPublishDelay / 2)
			f.ensure(t, m)
			check()
			bundle = bundleCAs(t, m.CABundle())
			if issuerIndex(served(t, m), bundle) != 0 || len(bundle) != 2 {
				t.Fatalf("at %s: after the publish delay, want a certificate from the new CA with both CAs trusted", f.clock.Now())
			}
			switches++
		}
		if prunedAt.IsZero() && !contains(bundleCAs(t, m.CABundle()), firstCA) {
			prunedAt = now
		}
	}

	if waits != 1 || switches != 1 {
		t.Errorf("saw %d waits and %d switches to a new CA, want 1 each", waits, switches)
	}
	if prunedAt.IsZero() || prunedAt.Before(firstCA.NotAfter) {
		t.Errorf("first CA (expires %s) left the bundle at %s; want it kept until it expires, then dropped", firstCA.NotAfter, prunedAt)
	}
	if got := len(bundleCAs(t, m.CABundle())); got != 1 {
		t.Errorf("after the first CA expired the bundle holds %d CAs, want 1", got)
	}
}

// TestSwitchWaitsForPublish rotates the CA while the CRD cannot be patched: the serving
// certificate must stay with the old CA until every target carries the new one, and then
// for the publish delay.
func TestSwitchWaitsForPublish(t *testing.T) {
	f := newFixture(t)
	f.opts.CAValidity, f.opts.CertValidity = 30*day, 10*day
	publishFails := false
	f.crds.PrependReactor("patch", "customresourcedefinitions", func(k8stesting.Action) (bool, runtime.Object, error) {
		if publishFails {
			return true, nil, errors.New("etcdserver: request timed out")
		}
		return false, nil, nil
	})
	m := f.manager(t)
	var cas [][]byte // every signing CA seen, in order, by DER

	published := 21*day + 2*time.Hour // when the new CA first reaches every target
	steps := []struct {
		name         string
		at           time.Duration
		publishFails bool
		// resetWebhook clears one webhook's caBundle before the pass, as a careless
		// kubectl apply of the manifest would.
		resetWebhook bool
		wantErr      bool
		// wantIssuer indexes cas: which CA signed the served certificate.
		wantIssuer int
	}{
		{name: "first start", at: 0, wantIssuer: 0},
		{name: "serving certificate expired: renewed by the same CA", at: 14 * day, wantIssuer: 0},
		{name: "CA due but the CRD cannot be patched", at: 21 * day, publishFails: true, wantErr: true, wantIssuer: 0},
		{name: "still failing long past the publish delay", at: 21*day + time.Hour, publishFails: true, wantErr: true, wantIssuer: 0},
		{name: "published at last: the switch waits", at: published, wantIssuer: 0},
		{name: "a webhook's caBundle reset by hand: re-published, the wait restarts", at: published + DefaultPublishDelay/2, resetWebhook: true, wantIssuer: 0},
		{name: "the first wait would be over, the restarted one is not", at: published + DefaultPublishDelay, wantIssuer: 0},
		{name: "one second short of the restarted wait", at: published + DefaultPublishDelay*3/2 - time.Second, wantIssuer: 0},
		{name: "wait over: served from the new CA", at: published + DefaultPublishDelay*3/2, wantIssuer: 1},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			f.clock.SetTime(epoch.Add(step.at))
			publishFails = step.publishFails
			if step.resetWebhook {
				resetWebhookBundle(t, f)
			}
			err := m.Ensure(context.Background())
			if (err != nil) != step.wantErr {
				t.Fatalf("Ensure() = %v, wantErr %t", err, step.wantErr)
			}
			signing := bundleCAs(t, f.secret(t).Data[keyCACert])[0]
			if len(cas) == 0 || !bytes.Equal(cas[len(cas)-1], signing.Raw) {
				cas = append(cas, signing.Raw)
			}
			leaf := served(t, m)
			if step.wantIssuer >= len(cas) {
				t.Fatalf("want a certificate from CA %d, only %d CAs exist", step.wantIssuer, len(cas))
			}
			ca, err := x509.ParseCertificate(cas[step.wantIssuer])
			if err != nil {
				t.Fatal(err)
			}
			if err := leaf.CheckSignatureFrom(ca); err != nil {
				t.Errorf("served certificate is not from CA %d: %v", step.wantIssuer, err)
			}
			if !bytes.Equal(leaf.Raw, mustLeaf(t, f.secret(t).Data).Raw) {
				t.Errorf("the Secret holds a certificate other than the served one")
			}
			f.requireServedTrusted(t, m)
			if err := m.Ready(); err != nil {
				t.Errorf("Ready() = %v; the published bundle still trusts the served certificate", err)
			}
		})
	}
}

// resetWebhookBundle clears the caBundle of the configuration's first webhook.
func resetWebhookBundle(t *testing.T, f *fixture) {
	t.Helper()
	ctx := context.Background()
	vwcs := f.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	vwc, err := vwcs.Get(ctx, testVWC, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vwc.Webhooks[0].ClientConfig.CABundle = nil
	if _, err := vwcs.Update(ctx, vwc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestDeletedSecretKeepsServingUntilPublished deletes the Secret, the way to force a new
// CA, while no target can be patched: the replica must keep serving the certificate the
// published bundle trusts, and move only once the new CA is published.
func TestDeletedSecretKeepsServingUntilPublished(t *testing.T) {
	f := newFixture(t)
	publishFails := false
	failPatch := func(k8stesting.Action) (bool, runtime.Object, error) {
		if publishFails {
			return true, nil, errors.New("etcdserver: request timed out")
		}
		return false, nil, nil
	}
	f.kube.PrependReactor("patch", "validatingwebhookconfigurations", failPatch)
	f.crds.PrependReactor("patch", "customresourcedefinitions", failPatch)
	m := f.manager(t)
	f.ensure(t, m)
	first := served(t, m)

	if err := f.kube.CoreV1().Secrets(testNamespace).Delete(context.Background(), testSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	publishFails = true
	if err := m.Ensure(context.Background()); err == nil {
		t.Fatalf("Ensure() = nil with every patch failing")
	}
	if !served(t, m).Equal(first) {
		t.Errorf("moved to a certificate from an unpublished CA")
	}
	f.requireServedTrusted(t, m)
	if err := m.Ready(); err != nil {
		t.Errorf("Ready() = %v, want nil: the served certificate is still trusted", err)
	}

	publishFails = false
	f.ensure(t, m)
	if served(t, m).Equal(first) {
		t.Errorf("still serving the old certificate after the new CA was published")
	}
	f.requireServedTrusted(t, m)
}
