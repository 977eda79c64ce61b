package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tree is the file system of one layer: absolute paths to what they are.
type tree struct {
	entries map[string]entry
}

type entry struct {
	kind   byte // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	mode   int64
	src    string // a regular file's content, on this machine
	target string // a symlink's
}

func newTree() *tree { return &tree{entries: map[string]entry{}} }

// addFile copies the file src to dst, with dst's parent folders.
func (t *tree) addFile(dst, src string, mode int64) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	t.addDirs(path.Dir(dst))
	t.entries[dst] = entry{kind: tar.TypeReg, mode: mode, src: src}
	return nil
}

func (t *tree) addDirs(dir string) {
	for ; dir != "/" && dir != "."; dir = path.Dir(dir) {
		t.entries[dir] = entry{kind: tar.TypeDir, mode: 0o755}
	}
}

// addProgram copies the ELF executable p of this machine, its interpreter and every
// shared library it loads, transitively, at the paths this machine has them.
func (t *tree) addProgram(p string) error {
	seen := map[string]bool{}
	queue := []string{p}
	for len(queue) > 0 {
		file := queue[0]
		queue = queue[1:]
		if seen[file] {
			continue
		}
		seen[file] = true
		if err := t.addHost(file, 0); err != nil {
			return fmt.Errorf("copying %s (for %s): %w", file, p, err)
		}
		deps, err := elfDeps(file)
		if err != nil {
			return fmt.Errorf("reading %s (for %s): %w", file, p, err)
		}
		queue = append(queue, deps...)
	}
	return nil
}

// addHost copies the path p of this machine as it is there: each symlink on the way
// (/lib to usr/lib on a merged /usr, libfoo.so.1 to libfoo.so.1.2.3) becomes the same
// symlink, followed to the real folder or file.
func (t *tree) addHost(p string, links int) error {
	if links > 40 {
		return fmt.Errorf("%s: too many levels of symbolic links", p)
	}
	parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	cur := "/"
	for i, part := range parts {
		next := path.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			t.entries[next] = entry{kind: tar.TypeSymlink, mode: 0o777, target: target}
			if !path.IsAbs(target) {
				target = path.Join(cur, target)
			}
			return t.addHost(path.Join(append([]string{target}, parts[i+1:]...)...), links+1)
		case fi.IsDir():
			t.entries[next] = entry{kind: tar.TypeDir, mode: 0o755}
		case fi.Mode().IsRegular() && i == len(parts)-1:
			t.entries[next] = entry{kind: tar.TypeReg, mode: int64(fi.Mode().Perm()), src: next}
		default:
			return fmt.Errorf("%s is neither a folder, a regular file nor a symlink", next)
		}
		cur = next
	}
	return nil
}

// libDirs are where the dynamic loader looks for a library with no ld.so.cache: the
// multiarch folders of Debian, then the classic ones.
func libDirs() []string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "riscv64": "riscv64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu"}[runtime.GOARCH]
	return []string{"/lib/" + triplet, "/usr/lib/" + triplet, "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
}

// elfDeps are the interpreter and the resolved shared libraries that the ELF file p names.
func elfDeps(p string) ([]string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var deps []string
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return nil, err
			}
			deps = append(deps, strings.TrimRight(string(b), "\x00"))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, err
	}
	for _, lib := range libs {
		found := ""
		for _, dir := range libDirs() {
			if _, err := os.Stat(path.Join(dir, lib)); err == nil {
				found = path.Join(dir, lib)
				break
			}
		}
		if found == "" {
			return nil, fmt.Errorf("%s needs %s, which is in none of %s", p, lib, strings.Join(libDirs(), ", "))
		}
		deps = append(deps, found)
	}
	return deps, nil
}

// layer is the tree as an image layer: entries sorted, owned by root, at epoch, so that
// the same files make the same digest.
func (t *tree) layer() (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range slices.Sorted(maps.Keys(t.entries)) {
		e := t.entries[p]
		h := &tar.Header{Typeflag: e.kind, Name: strings.TrimPrefix(p, "/"), Mode: e.mode, ModTime: epoch, Linkname: e.target, Format: tar.FormatPAX}
		if e.kind == tar.TypeDir {
			h.Name += "/"
		}
		var content []byte
		if e.kind == tar.TypeReg {
			var err error
			if content, err = os.ReadFile(e.src); err != nil {
				return nil, err
			}
			h.Size = int64(len(content))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}
