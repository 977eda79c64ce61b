package integration

import (
	"bufio"
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/egressgw/egressgw/test/controlplane"
)

// installDirs are the kustomizations an operator applies: the install base and the node
// cleanup for uninstalling.
var installDirs = []string{"artifacts", filepath.Join("artifacts", "uninstall")}

// TestInstallManifestsRunOnlyWhatTheImagesHold checks every container in installDirs
// against the Dockerfile and the binaries it builds: the image is a target of the
// Dockerfile, a command other than the binary runs only on a base that has one, every flag
// passed is a flag the binary defines (with a value unless it is a boolean), and every
// $(VAR) in the arguments is in the container's environment. kubelet passes an unknown
// $(VAR) through literally, and the binaries exit on an unknown flag: both would only
// show on a real cluster, as a crash loop.
func TestInstallManifestsRunOnlyWhatTheImagesHold(t *testing.T) {
	root := controlplane.RepoRoot()
	assets, err := controlplane.Assets()
	if err != nil {
		t.Fatal(err)
	}
	targets := readDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(targets) == 0 {
		t.Fatal("the Dockerfile has no target with an ENTRYPOINT")
	}
	var containers []manifestContainer
	for _, dir := range installDirs {
		out, err := exec.Command(filepath.Join(assets, "kubectl"), "kustomize", filepath.Join(root, dir)).Output()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v", dir, err)
		}
		containers = append(containers, podContainers(t, dir, out)...)
	}
	flags := binaryFlags(t, root, targets)

	for _, c := range containers {
		t.Run(c.where, func(t *testing.T) {
			name, _, _ := strings.Cut(c.Image, ":")
			binary, ok := strings.CutPrefix(name, "egressgw/")
			target, built := targets[binary]
			if !ok || !built {
				t.Fatalf("image %s: no Dockerfile target %q builds it (targets: %v)", c.Image, binary, slices.Sorted(maps.Keys(targets)))
			}
			args := c.Args
			if len(c.Command) > 0 {
				if c.Command[0] != target.entrypoint && c.Command[0] != binary {
					// Not the binary: the base must have programs besides it.
					if strings.Contains(target.base, "distroless") {
						t.Errorf("command %v: target %s is %s, which has nothing but the binary", c.Command, binary, target.base)
					}
					return
				}
				args = append(slices.Clone(c.Command[1:]), args...)
			}
			defined := flags[binary]
			env := map[string]bool{}
			for _, e := range c.Env {
				env[e.Name] = true
			}
			for _, arg := range args {
				for _, ref := range envRef.FindAllStringSubmatch(arg, -1) {
					if !env[ref[1]] {
						t.Errorf("%s: $(%s) is not in the container's env, so kubelet passes it literally", arg, ref[1])
					}
				}
				if !strings.HasPrefix(arg, "-") {
					t.Errorf("%q: not a flag; write a flag and its value as one argument, --flag=value", arg)
					continue
				}
				flagName, _, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
				typ, ok := defined[flagName]
				switch {
				case !ok:
					t.Errorf("%s: %s defines no flag %q", arg, binary, flagName)
				case typ != "" && !hasValue:
					t.Errorf("%s: flag %q takes a %s; write --%s=VALUE", arg, flagName, typ, flagName)
				}
			}
		})
	}
}

// envRef is a kubelet dependent environment variable reference, $(VAR).
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

type manifestContainer struct {
	where string // kustomization, workload and container, for the subtest name
	corev1.Container
}

// podContainers returns the containers and init containers of every Deployment and
// DaemonSet in a kustomize build.
func podContainers(t *testing.T, dir string, manifests []byte) []manifestContainer {
	t.Helper()
	var out []manifestContainer
	for _, doc := range bytes.Split(manifests, []byte("\n---\n")) {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		var spec corev1.PodSpec
		switch head.Kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict(doc, &d); err != nil {
				t.Fatalf("%s: Deployment %s: %v", dir, head.Metadata.Name, err)
			}
			spec = d.Spec.Template.Spec
		case "DaemonSet":
			var d appsv1.DaemonSet
			if err := yaml.UnmarshalStrict(doc, &d); err != nil {
				t.Fatalf("%s: DaemonSet %s: %v", dir, head.Metadata.Name, err)
			}
			spec = d.Spec.Template.Spec
		default:
			continue
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			out = append(out, manifestContainer{where: dir + "/" + head.Kind + "/" + head.Metadata.Name + "/" + c.Name, Container: c})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no Deployment or DaemonSet", dir)
	}
	return out
}

// dockerTarget is one stage of the Dockerfile that ends in an image.
type dockerTarget struct {
	base       string // the FROM image
	entrypoint string // ENTRYPOINT's program
}

var (
	fromLine       = regexp.MustCompile(`(?i)^FROM\s+(?:--platform=\S+\s+)?(\S+)\s+AS\s+(\S+)`)
	entrypointLine = regexp.MustCompile(`(?i)^ENTRYPOINT\s+\["([^"]+)"`)
)

// readDockerfile returns the Dockerfile's stages that have an ENTRYPOINT, by name. Each
// must be named after the binary it runs, and that binary's package must be among those
// the Dockerfile builds.
func readDockerfile(t *testing.T, path string) map[string]dockerTarget {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]dockerTarget{}
	var stage, base string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := fromLine.FindStringSubmatch(line); m != nil {
			base, stage = m[1], m[2]
		}
		if m := entrypointLine.FindStringSubmatch(line); m != nil {
			if filepath.Base(m[1]) != stage {
				t.Errorf("Dockerfile: target %s runs %s; name the target after its binary, as the image is", stage, m[1])
			}
			if !bytes.Contains(data, []byte("/cmd/"+stage)) {
				t.Errorf("Dockerfile: target %s runs %s, but no package .../cmd/%s is built", stage, m[1], stage)
			}
			targets[stage] = dockerTarget{base: base, entrypoint: m[1]}
		}
	}
	return targets
}

// helpFlag is a flag in the usage text of Go's flag package ("  -name type") or of pflag
// ("      --name type", "  -v, --v Level"). A boolean flag has no type.
var helpFlag = regexp.MustCompile(`^\s+(?:-\w, )?--?([A-Za-z0-9][\w.-]*)(?: (\S+))?(?:\s|$)`)

// binaryFlags builds the binary of every target and returns, for each, its flags and their
// types ("" for a boolean), read from its --help.
func binaryFlags(t *testing.T, root string, targets map[string]dockerTarget) map[string]map[string]string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the binaries needs the go command: %v", err)
	}
	bin := t.TempDir()
	build := []string{"build", "-o", bin + string(filepath.Separator)}
	for name := range targets {
		// A component's commands are in its folder's cmd/: <component>/cmd, or
		// apiserver/aggregated/cmd for the aggregated server.
		pkgs, err := filepath.Glob(filepath.Join(root, "*", "cmd", name))
		deeper, err2 := filepath.Glob(filepath.Join(root, "*", "*", "cmd", name))
		if pkgs = append(pkgs, deeper...); err != nil || err2 != nil || len(pkgs) != 1 {
			t.Fatalf("want one package */cmd/%s or */*/cmd/%s for the Dockerfile target, found %v", name, name, pkgs)
		}
		rel, _ := filepath.Rel(root, pkgs[0])
		build = append(build, "./"+filepath.ToSlash(rel))
	}
	cmd := exec.Command(goTool, build...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(build, " "), err, out)
	}
	all := map[string]map[string]string{}
	for name := range targets {
		// Both flag packages print the usage and exit 0 on --help.
		out, _ := exec.Command(filepath.Join(bin, name), "--help").CombinedOutput()
		flags := map[string]string{}
		for _, line := range strings.Split(string(out), "\n") {
			if m := helpFlag.FindStringSubmatch(line); m != nil {
				flags[m[1]] = m[2]
			}
		}
		if len(flags) == 0 {
			t.Fatalf("%s --help lists no flags:\n%s", name, out)
		}
		all[name] = flags
	}
	return all
}
