package main

import (
	"fmt"
	"slices"
	"strings"
)

// The folders of the module, by role. A folder says who may import it.
var (
	// shared are the packages every component may import: the API types and their
	// install packages, the generated clients, the routing decision, the contracts
	// between components, and the TLS and metrics access they all serve with. They import
	// nothing of any component.
	shared = []string{"apiserver/apis", "apiserver/client", "apiserver/routing", "apiserver/heartbeat", "apiserver/certs", "apiserver/metricsauth"}
	// components import the shared packages and their own, and may import the folders
	// listed for them: the node agent's dataplane is bpf/.
	components = map[string][]string{
		"webhook":              nil,
		"controller":           nil,
		"nodeagent":            {"bpf"},
		"bpf":                  nil,
		"apiserver/aggregated": nil,
	}
	// free may import anything: the test harness and the developer's tools.
	free = []string{"hack", "test"}
	// testHelpers may be imported by any package's tests: they import no package of the
	// module (the standard library, and cilium/ebpf to play another CNI's program).
	testHelpers = []string{"test/testenv"}
)

// pkg is one package as go list -json describes it.
type pkg struct {
	ImportPath                         string
	Imports, TestImports, XTestImports []string
}

// check lists every import of the module's own packages that a package's role forbids,
// and every package in a folder with no role.
func check(module string, pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		from, ok := strings.CutPrefix(p.ImportPath, module+"/")
		if !ok {
			continue
		}
		role, ok := roleOf(from)
		if !ok {
			out = append(out, fmt.Sprintf("%s: in no folder of hack/importcheck/rules.go; give its folder a role", from))
			continue
		}
		if role == "free" {
			continue
		}
		tests := slices.Concat(p.TestImports, p.XTestImports)
		for _, imp := range slices.Concat(p.Imports, tests) {
			to, ok := strings.CutPrefix(imp, module+"/")
			if !ok || to == from {
				continue
			}
			helper := slices.Contains(testHelpers, to) && slices.Contains(tests, imp) && !slices.Contains(p.Imports, imp)
			if !helper && !allowed(role, to) {
				out = append(out, fmt.Sprintf("%s imports %s", from, to))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// roleOf is "shared", "free", or the component folder that holds the package.
func roleOf(path string) (string, bool) {
	for _, s := range shared {
		if within(path, s) {
			return "shared", true
		}
	}
	for _, f := range free {
		if within(path, f) {
			return "free", true
		}
	}
	for c := range components {
		if within(path, c) {
			return c, true
		}
	}
	return "", false
}

func allowed(role, to string) bool {
	target, ok := roleOf(to)
	switch {
	case !ok || target == "free":
		return false
	case target == "shared":
		return true
	case role == "shared":
		return false
	}
	return target == role || slices.Contains(components[role], target)
}

func within(path, folder string) bool {
	return path == folder || strings.HasPrefix(path, folder+"/")
}
