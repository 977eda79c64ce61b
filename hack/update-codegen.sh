#!/usr/bin/env bash
# Regenerates everything derived from the API types: deepcopy functions and CRDs
# (controller-gen), and the typed clientset, listers and informers (k8s.io/code-generator).
# Every tool is pinned in go.mod's tool block.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

module=$(go list -m)
apis=(apiserver/apis/networking/v1 apiserver/apis/networking/v1alpha1)
header=hack/boilerplate.go.txt
client=apiserver/client

go tool controller-gen object:headerFile="$header" crd:crdVersions=v1 \
	paths=./apiserver/apis/... output:crd:artifacts:config=artifacts/crds
go run ./hack/crd-descriptions artifacts/crds/*.yaml

rm -rf "$client"
inputs=()
for api in "${apis[@]}"; do inputs+=(--input "$module/$api"); done
go tool client-gen --go-header-file "$header" --clientset-name versioned --input-base "" \
	"${inputs[@]}" --output-dir "$client/clientset" --output-pkg "$module/$client/clientset"
go tool lister-gen --go-header-file "$header" \
	--output-dir "$client/listers" --output-pkg "$module/$client/listers" "${apis[@]/#/./}"
go tool informer-gen --go-header-file "$header" \
	--versioned-clientset-package "$module/$client/clientset/versioned" \
	--listers-package "$module/$client/listers" \
	--output-dir "$client/informers" --output-pkg "$module/$client/informers" "${apis[@]/#/./}"
