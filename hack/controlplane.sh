#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kubectl from the Go module proxy at the versions pinned in
# hack/controlplane/*/go.mod, into a git-ignored cache folder. A no-op when they are already built.
#
#   hack/controlplane.sh          build if missing, then print the folder
#
# The folder is what envtest calls KUBEBUILDER_ASSETS.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/k8s-build.sh
source "$root/hack/k8s-build.sh"
k8s_version=$(pinned k8s.io/kubernetes "$root/hack/controlplane/kubernetes/go.mod")
etcd_version=$(pinned go.etcd.io/etcd/server/v3 "$root/hack/controlplane/etcd/go.mod")
[[ -n "$k8s_version" && -n "$etcd_version" ]] || { echo "cannot read the pinned versions" >&2; exit 1; }
out="${EGRESSGW_CONTROLPLANE_DIR:-$root/.cache/controlplane/k8s-$k8s_version-etcd-$etcd_version}"

if [[ -x "$out/kube-apiserver" && -x "$out/kubectl" && -x "$out/etcd" ]]; then
	echo "$out"
	exit 0
fi

mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

ldflags=$(k8s_ldflags "$k8s_version")

start=$SECONDS
echo "building kube-apiserver and kubectl $k8s_version, etcd $etcd_version into $out (about 6 minutes on 2 cores the first time)" >&2
(cd "$root/hack/controlplane/kubernetes" &&
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
(cd "$root/hack/controlplane/etcd" &&
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .)
mv "$tmp"/kube-apiserver "$tmp"/kubectl "$tmp"/etcd "$out/"
echo "built in $((SECONDS - start))s" >&2
echo "$out"
