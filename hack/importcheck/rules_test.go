package main

import (
	"slices"
	"testing"
)

func TestCheck(t *testing.T) {
	const m = "example.com/egressgw"
	for _, tc := range []struct {
		name string
		pkg  pkg
		want []string
	}{
		{name: "a component imports the shared API",
			pkg: pkg{ImportPath: m + "/controller", Imports: []string{m + "/apiserver/apis/networking/v1", m + "/apiserver/routing", m + "/controller/placement", "fmt"}}},
		{name: "the node agent imports its dataplane",
			pkg: pkg{ImportPath: m + "/nodeagent", Imports: []string{m + "/bpf", m + "/apiserver/heartbeat"}}},
		{name: "a component imports another",
			pkg:  pkg{ImportPath: m + "/controller", Imports: []string{m + "/webhook"}},
			want: []string{"controller imports webhook"}},
		{name: "a test file imports another component",
			pkg:  pkg{ImportPath: m + "/apiserver/aggregated/view", XTestImports: []string{m + "/nodeagent/floatingip"}},
			want: []string{"apiserver/aggregated/view imports nodeagent/floatingip"}},
		{name: "the dataplane imports the agent",
			pkg:  pkg{ImportPath: m + "/bpf", Imports: []string{m + "/nodeagent"}},
			want: []string{"bpf imports nodeagent"}},
		{name: "the shared API imports a component",
			pkg:  pkg{ImportPath: m + "/apiserver/routing", Imports: []string{m + "/apiserver/aggregated/preview", m + "/apiserver/apis/networking/v1"}},
			want: []string{"apiserver/routing imports apiserver/aggregated/preview"}},
		{name: "a component imports the test harness",
			pkg:  pkg{ImportPath: m + "/webhook", TestImports: []string{m + "/test/controlplane"}},
			want: []string{"webhook imports test/controlplane"}},
		{name: "tests use the test helpers",
			pkg: pkg{ImportPath: m + "/nodeagent", TestImports: []string{m + "/test/testenv"}}},
		{name: "code does not use the test helpers",
			pkg:  pkg{ImportPath: m + "/nodeagent", Imports: []string{m + "/test/testenv"}, TestImports: []string{m + "/test/testenv"}},
			want: []string{"nodeagent imports test/testenv"}},
		{name: "the test harness imports anything",
			pkg: pkg{ImportPath: m + "/test/cluster", Imports: []string{m + "/controller", m + "/webhook", m + "/nodeagent"}}},
		{name: "a folder with no role",
			pkg:  pkg{ImportPath: m + "/apiserver/misc"},
			want: []string{"apiserver/misc: in no folder of hack/importcheck/rules.go; give its folder a role"}},
		{name: "a prefix is not a folder",
			pkg:  pkg{ImportPath: m + "/controllers"},
			want: []string{"controllers: in no folder of hack/importcheck/rules.go; give its folder a role"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := check(m, []pkg{tc.pkg}); !slices.Equal(got, tc.want) {
				t.Errorf("check = %q, want %q", got, tc.want)
			}
		})
	}
}
