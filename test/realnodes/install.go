package realnodes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/egressgw/egressgw/test/controlplane"
)

// The names docs/install.md builds the images under (make images TAG=v0.1.0
// IMAGE_REPO=registry.example.com/egressgw), and its overlay sets.
const (
	InstallRepo = "registry.example.com/egressgw"
	InstallTag  = "v0.1.0"
)

// Components are the product's images, as named in artifacts/.
var Components = []string{"egressgw-webhook", "egressgw-controller", "egressgw-apiserver", "egressgw-agent"}

// Rollouts are what docs/install.md waits for after kubectl apply -k, in its order.
var Rollouts = []string{"deployment/egressgw-webhook", "deployment/egressgw-controller", "deployment/egressgw-apiserver", "daemonset/egressgw-agent"}

// InstallTarballs builds the components' images as docs/install.md does, into
// .cache/images-install (again whenever the sources changed), and returns their tarballs.
func InstallTarballs() ([]string, error) {
	return imageTarballs(filepath.Join(controlplane.RepoRoot(), ".cache", "images-install"), Components, "-repo", InstallRepo, "-tag", InstallTag)
}

// WriteOverlay writes the overlay of docs/install.md's step 2 into dir: the base
// artifacts/, the images as built, and the cluster's ranges (the service range; the
// pods' supernet, which each Node's spec.podCIDRs is a part of).
func WriteOverlay(dir, serviceCIDR, podCIDR string) error {
	base, err := filepath.Rel(dir, filepath.Join(controlplane.RepoRoot(), "artifacts"))
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- %s\nimages:\n", base)
	for _, c := range Components {
		fmt.Fprintf(&b, "- {name: egressgw/%s, newName: %s/%s, newTag: %s}\n", c, InstallRepo, c, InstallTag)
	}
	fmt.Fprintf(&b, `configMapGenerator:
- name: egressgw-config
  namespace: egressgw-system
  behavior: merge
  literals:
  - CLUSTER_CIDRS=%[1]s,%[2]s
  - SERVICE_CIDRS=%[1]s
  - POD_CIDRS=%[2]s
`, serviceCIDR, podCIDR)
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644)
}

// Install does what docs/install.md's steps 2 and 3 tell a user: kubectl apply -k of the
// overlay in dir, every rollout status it lists, and the wait for the APIService. logf, if
// not nil, hears when each was done.
func Install(ctx context.Context, cp *controlplane.ControlPlane, dir string, logf func(format string, args ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	start := time.Now()
	if _, err := cp.Kubectl(nil, "apply", "-k", dir); err != nil {
		return err
	}
	// kubectl waits as long as it is told, beyond cp.Kubectl's minute.
	wait := func(args ...string) error {
		ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		defer cancel()
		if out, err := cp.KubectlCommand(ctx, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, r := range Rollouts {
		if err := wait("-n", "egressgw-system", "rollout", "status", r, "--timeout=3m"); err != nil {
			return err
		}
		logf("rollout status %s: done %s after kubectl apply", r, time.Since(start).Round(time.Millisecond))
	}
	if err := wait("wait", "--for=condition=Available", "apiservice/v1alpha1.egress.egressgw.io", "--timeout=2m"); err != nil {
		return err
	}
	logf("APIService Available %s after kubectl apply", time.Since(start).Round(time.Millisecond))
	return nil
}
