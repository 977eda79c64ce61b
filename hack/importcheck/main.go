// Command importcheck fails when a component imports another component's packages.
// Components meet only in the shared API under apiserver/ (see rules.go); hack/ and test/
// may import anything. make verify runs it.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	module, err := goList("list", "-m")
	if err != nil {
		return err
	}
	out, err := goList("list", "-json=ImportPath,Imports,TestImports,XTestImports", "./...")
	if err != nil {
		return err
	}
	pkgs, err := decode(bytes.NewReader(out))
	if err != nil {
		return err
	}
	violations := check(string(bytes.TrimSpace(module)), pkgs)
	for _, v := range violations {
		fmt.Fprintln(os.Stderr, v)
	}
	if len(violations) > 0 {
		return fmt.Errorf("%d imports cross a component boundary: components meet only in the shared packages of apiserver/ (hack/importcheck/rules.go)", len(violations))
	}
	fmt.Printf("importcheck: %d packages, no component imports another\n", len(pkgs))
	return nil
}

func goList(args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %v: %w: %s", args, err, stderr.String())
	}
	return out, nil
}

func decode(r io.Reader) ([]pkg, error) {
	var pkgs []pkg
	dec := json.NewDecoder(r)
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading go list's output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}
