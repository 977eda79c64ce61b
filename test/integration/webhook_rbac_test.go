package integration

import (
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"

	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/egressgw/egressgw/test/controlplane"
)

// TestWebhookMayChangeOnlyCABundle applies the webhook's RBAC and admission policy from
// artifacts/ and acts as the webhook's ServiceAccount: it may write caBundle into its own
// webhook configuration and CRD, and nothing else there, and nothing in any other object.
// A stolen webhook token must not be able to point admission or conversion elsewhere, or
// switch admission off with failurePolicy Ignore.
func TestWebhookMayChangeOnlyCABundle(t *testing.T) {
	cp := controlplane.StartForTest(t)
	for _, f := range []string{"rbac.yaml", "cabundle-only.yaml"} {
		mustKubectl(t, cp, nil, "apply", "-f", filepath.Join(controlplane.RepoRoot(), "artifacts", "webhook", f))
	}
	mustKubectl(t, cp, []byte("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: someone-else}\n"), "create", "-f", "-")
	cfg := rest.CopyConfig(cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:egressgw-system:egressgw-webhook",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:egressgw-system", "system:authenticated"},
	}
	vwcs := kubernetes.NewForConfigOrDie(cfg).AdmissionregistrationV1().ValidatingWebhookConfigurations()
	crds := apiextensionsclient.NewForConfigOrDie(cfg).ApiextensionsV1().CustomResourceDefinitions()
	ctx := context.Background()
	const (
		vwc = "egressgw-validating-webhook"
		crd = "egressnatpolicies.networking.gke.io"
	)
	jsonPatch := func(patch string) []byte { return []byte(patch) }
	ignore := jsonPatch(`[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]`)

	// The API server enforces a new policy once its informer has it: wait for a denial,
	// probing with a dry run, which stores nothing.
	eventually(t, 10*time.Second, func() string {
		_, err := vwcs.Patch(ctx, vwc, types.JSONPatchType, ignore, metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			return "the admission policy is not enforced yet"
		}
		return ""
	})

	// A CRD's caBundle must parse as PEM certificates; any certificate will do.
	certPEM, _, err := certutil.GenerateSelfSignedCertKey("egressgw-test-ca", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	bundle := `"` + base64.StdEncoding.EncodeToString(certPEM) + `"`
	tests := []struct {
		name    string
		do      func() error
		wantErr string // empty: allowed
	}{
		{name: "writes caBundle into its webhook configuration", do: func() error {
			_, err := vwcs.Patch(ctx, vwc, types.JSONPatchType, jsonPatch(`[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":`+bundle+`}]`), metav1.PatchOptions{})
			return err
		}},
		{name: "writes caBundle into its CRD's conversion webhook", do: func() error {
			_, err := crds.Patch(ctx, crd, types.JSONPatchType, jsonPatch(`[{"op":"add","path":"/spec/conversion/webhook/clientConfig/caBundle","value":`+bundle+`}]`), metav1.PatchOptions{})
			return err
		}},
		{name: "may not set failurePolicy Ignore", wantErr: "may change only clientConfig.caBundle in ValidatingWebhookConfiguration egressgw-validating-webhook", do: func() error {
			_, err := vwcs.Patch(ctx, vwc, types.JSONPatchType, ignore, metav1.PatchOptions{})
			return err
		}},
		{name: "may not point a webhook elsewhere", wantErr: "may change only clientConfig.caBundle", do: func() error {
			_, err := vwcs.Patch(ctx, vwc, types.JSONPatchType, jsonPatch(`[{"op":"replace","path":"/webhooks/0/clientConfig/url","value":"https://203.0.113.9/"}]`), metav1.PatchOptions{})
			return err
		}},
		{name: "may not drop a webhook's rules", wantErr: "may change only clientConfig.caBundle", do: func() error {
			_, err := vwcs.Patch(ctx, vwc, types.JSONPatchType, jsonPatch(`[{"op":"remove","path":"/webhooks/0/rules"}]`), metav1.PatchOptions{})
			return err
		}},
		{name: "may not point conversion elsewhere", wantErr: "may change only spec.conversion.webhook.clientConfig.caBundle in CustomResourceDefinition " + crd, do: func() error {
			_, err := crds.Patch(ctx, crd, types.JSONPatchType, jsonPatch(`[{"op":"replace","path":"/spec/conversion/webhook/clientConfig/url","value":"https://203.0.113.9/convert"}]`), metav1.PatchOptions{})
			return err
		}},
		{name: "may not label its webhook configuration", wantErr: "metadata must stay as it is", do: func() error {
			_, err := vwcs.Patch(ctx, vwc, types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{})
			return err
		}},
		{name: "may not patch another webhook configuration", wantErr: "forbidden", do: func() error {
			_, err := vwcs.Patch(ctx, "someone-else", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantDenied(t, tt.do(), tt.wantErr)
		})
	}
}

// TestDeleteWithWebhookDown: with the webhook server gone, creates still fail closed, but an
// operator can delete a policy (and its gateway) to stop egress. Deletes go through v1, the
// stored version: the conversion webhook is down too.
func TestDeleteWithWebhookDown(t *testing.T) {
	cp := controlplane.StartForTest(t)
	mustKubectl(t, cp, []byte("apiVersion: networking.gke.io/v1\nkind: NetworkGatewayGroup\nmetadata: {name: gw, namespace: kube-system}\nspec:\n  floatingIPs: [198.51.100.100]\n"+
		"---\napiVersion: networking.gke.io/v1\nkind: EgressNATPolicy\nmetadata: {name: stop-me}\nspec:\n"+
		"  sources: [{podSelector: {matchLabels: {role: frontend}}}]\n  action: SNAT\n  destinations: [{cidr: 203.0.113.0/24}]\n  gatewayRef: {name: gw, namespace: kube-system}\n"+
		"---\n"+legacyPolicy("stop-me-too", "198.51.100.100")), "apply", "-f", "-")
	if err := cp.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	_, err := cp.Kubectl([]byte("apiVersion: networking.gke.io/v1\nkind: NetworkGatewayGroup\nmetadata: {name: gw2, namespace: kube-system}\nspec:\n  floatingIPs: [198.51.100.101]\n"), "apply", "-f", "-")
	var kerr *controlplane.KubectlError
	if !errors.As(err, &kerr) {
		t.Fatalf("a gateway was created with the webhook down: %v", err)
	}
	for _, args := range [][]string{
		{"delete", "egressnatpolicies.v1.networking.gke.io", "stop-me", "--timeout=20s"},
		{"delete", "egressnatpolicies.v1.networking.gke.io", "stop-me-too", "--timeout=20s"},
		{"delete", "networkgatewaygroups", "gw", "-n", "kube-system", "--timeout=20s"},
	} {
		if out, err := cp.Kubectl(nil, args...); err != nil {
			t.Errorf("kubectl %s with the webhook down: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
