#!/usr/bin/env bash
# Regenerates everything derived from the API types: deepcopy functions and CRDs
# (controller-gen), the typed clientset, listers and informers (k8s.io/code-generator), and
# the OpenAPI definitions the aggregated API server publishes (kube-openapi's openapi-gen).
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

# The aggregated API's types (egress.egressgw.io) are served, not stored: no CRD (their
# package is +kubebuilder:skip) and no client, but OpenAPI v2 and v3 for kubectl explain.
# API rule violations go to a committed list, so a new one shows as drift in hack/verify.sh;
# the ones there are apimachinery's own.
openapi=apiserver/apis/egress/openapi
meta=(k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime k8s.io/apimachinery/pkg/version)
go tool openapi-gen --go-header-file "$header" --output-dir "$openapi" --output-pkg "$module/$openapi" \
	--output-file zz_generated.openapi.go --report-filename "$openapi/violation_exceptions.list" \
	--output-model-name-file zz_generated.model_name.go "${meta[@]/#/--readonly-pkg=}" \
	"${meta[@]}" ./apiserver/apis/egress/v1alpha1

# The BPF objects (bpf2go, clang): committed, so that building needs no clang.
go generate ./bpf/...
