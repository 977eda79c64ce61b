package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/yaml"

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
	docs, err := renderedObjects(rendered)
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
		if present[d.ref] {
			existing = append(existing, d.yaml)
		} else {
			fresh = append(fresh, d.yaml)
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
		if !accepted[d.ref] {
			t.Errorf("the server-side dry run did not accept %s", d.ref)
		}
	}
	t.Logf("the API server accepted all %d objects of artifacts/: %d new (apply), %d already installed by the harness (replace)",
		len(docs), len(fresh), len(existing))
}

// renderedDoc is one object of a rendered stream: its YAML, and its name as kubectl
// prints it.
type renderedDoc struct {
	ref, yaml string
}

// renderedObjects splits a multi-document YAML stream into its objects, each named as
// kubectl prints it: kind.group/name in lower case, without the group for the core API.
func renderedObjects(stream string) ([]renderedDoc, error) {
	r := yaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	var out []renderedDoc
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, err
		}
		if obj.Kind == "" {
			continue // an empty document
		}
		if obj.Metadata.Name == "" {
			return nil, fmt.Errorf("a %s without a name", obj.Kind)
		}
		ref := strings.ToLower(obj.Kind)
		if group, _, ok := strings.Cut(obj.APIVersion, "/"); ok {
			ref += "." + group
		}
		out = append(out, renderedDoc{ref: ref + "/" + obj.Metadata.Name, yaml: string(doc)})
	}
}
