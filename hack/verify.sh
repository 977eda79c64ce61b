#!/usr/bin/env bash
# Fails if anything derived from the sources drifted (generated code, CRDs, formatting,
# go.mod), or if a component imports another component's packages. It regenerates in
# place, so commit your work first; a drift shows as a diff.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

fail=0
unformatted=$(gofmt -l $(git ls-files '*.go') 2>/dev/null || true)
if [[ -n "$unformatted" ]]; then
	echo "not gofmt'ed (run gofmt -w):" >&2
	echo "$unformatted" >&2
	fail=1
fi

go mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy (run go mod tidy)" >&2; fail=1; }

go run ./hack/importcheck || fail=1

hack/update-codegen.sh
generated=(apiserver artifacts/crds bpf)
if ! git diff --exit-code --stat -- "${generated[@]}" >&2 ||
	[[ -n "$(git ls-files --others --exclude-standard -- "${generated[@]}")" ]]; then
	echo "generated code drifted from the API types (run make generate and commit)" >&2
	git ls-files --others --exclude-standard -- "${generated[@]}" >&2
	fail=1
fi
exit $fail
