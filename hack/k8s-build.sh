# Sourced by hack/controlplane.sh and hack/nodes.sh: what both need to build Kubernetes
# binaries from the Go module proxy.

# pinned MODULE GOMOD prints the version GOMOD requires of MODULE.
pinned() { awk -v m="$1" '$1 == m {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$2"; }

# k8s_ldflags VERSION prints the linker flags that stamp VERSION into a Kubernetes binary,
# as its release builds do: kubectl version and the Nodes show it.
k8s_ldflags() {
	local version=$1 minor=${1#v1.} flags="-s -w" pkg
	minor=${minor%%.*}
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$flags"
}
