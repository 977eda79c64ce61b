package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The users the images run as, numeric so that no /etc/passwd is needed and the
// Deployments' runAsNonRoot can verify them: 65532 is distroless's nonroot, 65535 the
// upstream pause image's.
const (
	nonRoot = "65532:65532"
	root    = "0:0"
	nobody  = "65535:65535"
)

// binDir is where every image keeps its binary.
const binDir = "/usr/local/bin"

// spec is one image: a binary of this module as its entrypoint and, for the agent, the
// host programs it runs.
type spec struct {
	name string // the image's name, and its tarball's
	pkg  string // the Go package of its binary, relative to the module root
	user string
	// host are programs of the build machine copied in with the shared libraries they
	// load, so that the agent can exec them.
	host []string
}

// The agent runs nft -f and nft -s list (nodeagent/host_linux.go), and the uninstall
// DaemonSet holds its pods with sleep (artifacts/uninstall). Rather than port the agent
// to a netlink nftables library, the image carries the build machine's nft (Debian's
// nftables package, which make deps installs) with its shared libraries and the dynamic
// loader: the agent's rendering and its read-back repair, which compares two nft -s list
// listings, stay the code the dataplane and e2e suites test against that same nft; a
// netlink port would rewrite both and leave the table unreadable to the nft an operator
// runs on the node. The cost: the image holds the build machine's libc, and is built for
// its architecture only.
var specs = []spec{
	{name: "egressgw-webhook", pkg: "./webhook/cmd/egressgw-webhook", user: nonRoot},
	{name: "egressgw-controller", pkg: "./controller/cmd/egressgw-controller", user: nonRoot},
	{name: "egressgw-apiserver", pkg: "./apiserver/aggregated/cmd/egressgw-apiserver", user: nonRoot},
	{name: "egressgw-agent", pkg: "./nodeagent/cmd/egressgw-agent", user: root, host: []string{"/usr/sbin/nft", "/usr/bin/sleep"}},
	{name: "egressgw-testclient", pkg: "./test/peer/cmd/egressgw-testclient", user: nonRoot},
	{name: "pause", pkg: "./hack/pause", user: nobody},
}

// binary is the name go build gives the package's binary.
func (s spec) binary() string { return filepath.Base(s.pkg) }

type options struct {
	out, repo, tag, src string
}

// built is one image tarball written.
type built struct {
	ref  string
	path string
	size int64
}

// build compiles every binary in one go build, as the Dockerfile does, and writes one
// tarball an image into o.out.
func build(ctx context.Context, o options) ([]built, error) {
	bin, err := os.MkdirTemp("", "egressgw-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bin)
	if err := goBuild(ctx, o.src, bin); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	var out []built
	for _, s := range specs {
		ref, err := name.NewTag(fmt.Sprintf("%s/%s:%s", o.repo, s.name, o.tag))
		if err != nil {
			return nil, fmt.Errorf("naming the image %s: %w", s.name, err)
		}
		img, err := s.image(bin)
		if err != nil {
			return nil, fmt.Errorf("building the image %s: %w", ref, err)
		}
		path := filepath.Join(o.out, s.name+".tar")
		if err := tarball.WriteToFile(path, ref, img); err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		out = append(out, built{ref: ref.String(), path: path, size: fi.Size()})
	}
	return out, nil
}

// goBuild builds the binaries with the Dockerfile's flags, for this machine's architecture:
// the agent's nft and its libraries are this machine's.
func goBuild(ctx context.Context, src, bin string) error {
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", bin + "/"}
	for _, s := range specs {
		args = append(args, s.pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	return nil
}

// epoch is every file's and the image's time, so that the same sources and the same host
// programs make the same image digests.
var epoch = time.Unix(0, 0).UTC()

// image is the image of s, FROM scratch: a layer of the host programs (if any), then one
// of the binary.
func (s spec) image(bin string) (v1.Image, error) {
	var layers []*tree
	if len(s.host) > 0 {
		t := newTree()
		for _, p := range s.host {
			if err := t.addProgram(p); err != nil {
				return nil, err
			}
		}
		layers = append(layers, t)
	}
	t := newTree()
	if err := t.addFile(filepath.Join(binDir, s.binary()), filepath.Join(bin, s.binary()), 0o755); err != nil {
		return nil, err
	}
	layers = append(layers, t)

	img := empty.Image
	for _, t := range layers {
		l, err := t.layer()
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config = v1.Config{
		Entrypoint: []string{filepath.Join(binDir, s.binary())},
		User:       s.user,
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		WorkingDir: "/",
	}
	return mutate.ConfigFile(img, cfg)
}
