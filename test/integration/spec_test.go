package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressgw/egressgw/test/controlplane"
)

// specManifests are the spec's complete manifests, copied into testdata/spec, with the spec
// documents that contain each one verbatim.
var specManifests = []struct {
	file  string
	docs  []string
	group string // the resource, as kubectl names it with its version
	needs string // a manifest that must be applied first: the gateway a policy uses
}{
	{"v1-networkgatewaygroup.yaml", v1Docs, "networkgatewaygroups.v1.networking.gke.io", ""},
	{"v1-networkgatewaygroup-status.yaml", v1Docs, "networkgatewaygroups.v1.networking.gke.io", ""},
	{"v1-egressnatpolicy.yaml", v1Docs, "egressnatpolicies.v1.networking.gke.io", "v1-networkgatewaygroup-status.yaml"},
	{"v1alpha1-anthosnetworkgateway.yaml", v1alpha1Docs, "anthosnetworkgateways.v1alpha1.networking.gke.io", ""},
	{"v1alpha1-anthosnetworkgateway-status.yaml", v1alpha1Docs, "anthosnetworkgateways.v1alpha1.networking.gke.io", ""},
	{"v1alpha1-egressnatpolicy.yaml", v1alpha1Docs, "egressnatpolicies.v1alpha1.networking.gke.io", "v1alpha1-anthosnetworkgateway-status.yaml"},
}

var (
	v1Docs       = []string{"egress-nat-gateway-v1.en.txt", "egress-nat-gateway-v1.ja.txt"}
	v1alpha1Docs = []string{"egress-nat-gateway-v1alpha1.pt.txt"}
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "test", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// specDir finds ../shared/spec beside the repository, or EGRESSGW_SPEC_DIR.
func specDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EGRESSGW_SPEC_DIR")
	if dir == "" {
		dir = filepath.Join(controlplane.RepoRoot(), "..", "shared", "spec")
	}
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the spec documents are not at %s (set EGRESSGW_SPEC_DIR): %v", dir, err)
		}
		t.Skipf("the spec documents are not at %s (set EGRESSGW_SPEC_DIR)", dir)
	}
	return dir
}

// TestSpecManifestsAreVerbatim checks that testdata/spec holds the spec's YAML exactly:
// each file must appear, line for line, in each spec document named for it, at whatever
// indentation the document uses.
func TestSpecManifestsAreVerbatim(t *testing.T) {
	dir := specDir(t)
	for _, m := range specManifests {
		want := strings.Split(strings.TrimRight(string(readTestdata(t, filepath.Join("spec", m.file))), "\n"), "\n")
		for _, doc := range m.docs {
			t.Run(m.file+" in "+doc, func(t *testing.T) {
				text, err := os.ReadFile(filepath.Join(dir, doc))
				if err != nil {
					t.Fatal(err)
				}
				if !containsBlock(strings.Split(string(text), "\n"), want) {
					t.Errorf("%s is not in %s verbatim", m.file, doc)
				}
			})
		}
	}
}

// containsBlock reports whether lines holds block as consecutive lines, all indented by the
// indentation of the first.
func containsBlock(lines, block []string) bool {
	for i := range lines {
		if i+len(block) > len(lines) {
			return false
		}
		indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " "))]
		match := true
		for j, want := range block {
			if lines[i+j] != indent+want {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
