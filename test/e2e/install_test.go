package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressgw/egressgw/test/controlplane"
)

// TestInstallManifests: `kubectl kustomize artifacts/` renders the install, and the real
// API server, which the rest of the suite runs against, accepts every object it renders
// in a server-side dry run: the schemas, the admission chain and the API versions are
// the cluster's, and nothing is written.
//
// The harness installed some of these objects already, in its own shape: its webhook
// runs in the test process, so its ValidatingWebhookConfiguration and the conversion of
// the EgressNATPolicy CRD name a URL instead of the artifacts' Service. `kubectl apply`
// would merge the artifacts' service into them next to that URL, which the API server
// rightly refuses whatever the manifests say. So the objects the cluster does not have
// are checked with `kubectl apply --dry-run=server`, as a first install is, and those it
// has with `kubectl replace --dry-run=server`, which validates each as the whole new
// state of its object.
func TestInstallManifests(t *testing.T) {
	c := need(t)
	rendered := kubectl(t, c, "", "kustomize", filepath.Join(controlplane.RepoRoot(), "artifacts"))
	docs, err := controlplane.ManifestObjects(rendered)
	if err != nil {
		t.Fatalf("kubectl kustomize rendered what does not decode: %v", err)
	}
	if len(docs) == 0 {
		t.Fatal("kubectl kustomize rendered nothing")
	}
	present := map[string]bool{}
	for _, name := range strings.Fields(kubectl(t, c, rendered, "get", "-f", "-", "--ignore-not-found", "-o", "name")) {
		present[name] = true
	}
	var fresh, existing []string
	for _, d := range docs {
		if present[d.Ref] {
			existing = append(existing, d.YAML)
		} else {
			fresh = append(fresh, d.YAML)
		}
	}
	accepted := map[string]bool{}
	for _, run := range []struct {
		verb string
		docs []string
	}{{"apply", fresh}, {"replace", existing}} {
		if len(run.docs) == 0 {
			continue
		}
		stdout, stderr, err := kubectlOutputs(c, strings.Join(run.docs, "---\n"), run.verb, "--dry-run=server", "-f", "-")
		if err != nil {
			t.Errorf("kubectl %s --dry-run=server: the API server refused: %v\n%s", run.verb, err, stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			if ref, ok := strings.CutSuffix(strings.TrimSpace(line), " (server dry run)"); ok {
				accepted[ref[:strings.LastIndex(ref, " ")]] = true // "kind.group/name created"
			}
		}
	}
	for _, d := range docs {
		if !accepted[d.Ref] {
			t.Errorf("the server-side dry run did not accept %s", d.Ref)
		}
	}
	t.Logf("the API server accepted all %d objects of artifacts/: %d new (apply), %d already installed by the harness (replace)",
		len(docs), len(fresh), len(existing))
}
