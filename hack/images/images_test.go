package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/egressgw/egressgw/test/testenv"
)

// TestImages builds every image and checks what a node would run: each tarball loads,
// names its image, runs its binary as its user, and the agent's nft runs in the agent's
// own root on the table the agent writes.
func TestImages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary")
	}
	out := t.TempDir()
	built, err := build(context.Background(), options{out: out, repo: "example.test/egw", tag: "t1", src: "../.."})
	if err != nil {
		t.Fatal(err)
	}
	if len(built) != len(specs) {
		t.Fatalf("built %d images, want %d", len(built), len(specs))
	}
	roots := map[string]string{}
	rootsDir := t.TempDir()
	for i, s := range specs {
		t.Run(s.name, func(t *testing.T) {
			path := filepath.Join(out, s.name+".tar")
			m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
			if err != nil {
				t.Fatalf("the tarball is no image archive: %v", err)
			}
			want := "example.test/egw/" + s.name + ":t1"
			if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{want}) || built[i].ref != want {
				t.Errorf("tags %v (reported %s), want [%s]", m, built[i].ref, want)
			}
			img, err := tarball.ImageFromPath(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			entry := "/usr/local/bin/" + s.binary()
			if got := cfg.Config.Entrypoint; !slices.Equal(got, []string{entry}) {
				t.Errorf("entrypoint %q, want [%s]", got, entry)
			}
			if cfg.Config.User != s.user || cfg.OS != "linux" || cfg.Architecture == "" {
				t.Errorf("user %q on %s/%s, want %q on linux", cfg.Config.User, cfg.OS, cfg.Architecture, s.user)
			}
			root := filepath.Join(rootsDir, s.name)
			if err := unpack(mutate.Extract(img), root); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(root, entry))
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 != 0o111 {
				t.Fatalf("%s is no executable file: %v, %v", entry, fi, err)
			}
			roots[s.name] = root
		})
	}

	testenv.RequireRoot(t, "chroot and network namespaces")
	t.Run("binaries run in their image's root as its user", func(t *testing.T) {
		for _, s := range specs {
			if s.name == "pause" || roots[s.name] == "" {
				continue // pause sleeps; containerd runs it below
			}
			// chroot exits 125 to 127 when it cannot run the program; the program's own
			// exit status for --help does not matter, its usage text does.
			out, err := chroot(roots[s.name], s.user, "/usr/local/bin/"+s.binary(), "--help")
			var exit *exec.ExitError
			if (err != nil && !errors.As(err, &exit)) || (exit != nil && exit.ExitCode() >= 125) || !strings.Contains(strings.ToLower(out), "usage") {
				t.Errorf("%s did not run: %v: %s", s.name, err, out)
			}
		}
	})
	t.Run("the agent's nft applies and lists the agent's table", func(t *testing.T) {
		root := roots["egressgw-agent"]
		if root == "" {
			t.Fatal("no agent image")
		}
		checkAgentNft(t, root)
	})
	t.Run("containerd imports every image and runs pause", func(t *testing.T) {
		checkContainerd(t, out, "example.test/egw", "t1")
	})
}

func checkAgentNft(t *testing.T, root string) {
	table, err := os.ReadFile("../../nodeagent/testdata/table.nft")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "table.nft"), table, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := chroot(root, root0, "/usr/sbin/nft", "--version"); err != nil || !strings.HasPrefix(out, "nftables v") {
		t.Fatalf("nft --version in the image: %v: %s", err, out)
	}
	if out, err := chroot(root, root0, "/usr/bin/sleep", "0"); err != nil {
		t.Errorf("sleep in the image (artifacts/uninstall holds its pods with it): %v: %s", err, out)
	}
	if out, err := chroot(root, root0, "/usr/sbin/nft", "-c", "-f", "/table.nft"); err != nil {
		t.Fatalf("nft -c -f in the image: %v: %s", err, out)
	}
	// Applied in a network namespace of its own, the table reads back from the image's nft
	// as from the host's, which the dataplane suites test the agent's read-back with.
	ns := fmt.Sprintf("egwimg-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	inNS := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := inNS("chroot", root, "/usr/sbin/nft", "-f", "/table.nft"); err != nil {
		t.Fatalf("nft -f in the image: %v: %s", err, out)
	}
	image, err := inNS("chroot", root, "/usr/sbin/nft", "-s", "list", "table", "ip", "egressgw")
	if err != nil || !strings.Contains(image, "snat to meta mark & 0xffff0000 map @snat_ips") {
		t.Fatalf("nft -s list in the image: %v: %s", err, image)
	}
	host, err := inNS("nft", "-s", "list", "table", "ip", "egressgw")
	if err != nil {
		t.Fatalf("the host's nft: %v: %s", err, host)
	}
	if image != host {
		t.Errorf("the image's nft lists the table otherwise than the host's:\n%s\nhost:\n%s", image, host)
	}
}

const root0 = "0:0"

// chroot runs prog in root as user ("uid:gid"), for at most 10 s.
func chroot(root, user, prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chroot", append([]string{"--userspec=" + user, root, prog}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// unpack writes the flattened file system r into dir.
func unpack(r io.ReadCloser, dir string) error {
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("unsafe path %q in the image", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(h.Mode).Perm())
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm()); err == nil {
				_, err = io.Copy(f, tr)
				err = errors.Join(err, f.Close())
			}
		default:
			err = fmt.Errorf("%s: unexpected tar entry type %q", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}
