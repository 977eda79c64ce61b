#!/usr/bin/env bash
# Builds what a real node and the rest of the control plane run: kubelet, kube-proxy,
# kube-scheduler and kube-controller-manager, from the Go module proxy at the Kubernetes
# version pinned in hack/controlplane/kubernetes/go.mod, into a git-ignored cache folder.
# A no-op when they are already built.
#
#   hack/nodes.sh          build if missing, then print the folder
#
# EGRESSGW_NODES_DIR overrides the folder. Containerd, runc and the CNI plugins are not
# built here: they come from Debian's packages (containerd, runc, containernetworking-plugins).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/k8s-build.sh
source "$root/hack/k8s-build.sh"
k8s_version=$(pinned k8s.io/kubernetes "$root/hack/controlplane/kubernetes/go.mod")
[[ -n "$k8s_version" ]] || { echo "cannot read the pinned Kubernetes version" >&2; exit 1; }
out="${EGRESSGW_NODES_DIR:-$root/.cache/nodes/k8s-$k8s_version}"
binaries=(kubelet kube-proxy kube-scheduler kube-controller-manager)

missing=0
for b in "${binaries[@]}"; do
	[[ -x "$out/$b" ]] || missing=1
done
if ((!missing)); then
	echo "$out"
	exit 0
fi

mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The same version stamp as hack/controlplane.sh, so that Nodes report the pinned version.
ldflags=$(k8s_ldflags "$k8s_version")

start=$SECONDS
echo "building ${binaries[*]} $k8s_version into $out (about 19 minutes on 2 shared cores the first time)" >&2
pkgs=()
for b in "${binaries[@]}"; do
	pkgs+=("k8s.io/kubernetes/cmd/$b")
done
(cd "$root/hack/controlplane/kubernetes" &&
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")
for b in "${binaries[@]}"; do
	mv "$tmp/$b" "$out/"
done
echo "built in $((SECONDS - start))s" >&2
echo "$out"
