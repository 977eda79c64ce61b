# The targets a developer and CI use. Tools are pinned in go.mod's tool block.
SHELL := /usr/bin/env bash -o pipefail -o errexit

GO ?= go

.PHONY: all build images test-images generate verify test test-unit test-integration e2e chaos bench lint check run demo-down deps controlplane fuzz nodes test-realnodes

all: build

## build: compile every package and command
build:
	$(GO) build ./...

## images: build the images of the Dockerfile without docker, as tarballs for
## `ctr -n k8s.io images import` or `docker load`, into IMAGES_DIR: the four components,
## egressgw-testclient (the demo's external host and pods' clients) and pause. They are
## named IMAGE_REPO/<name>:TAG; the agent's image carries this machine's nft (docs/install.md)
IMAGES_DIR ?= .cache/images
IMAGE_REPO ?= egressgw
TAG ?= dev
images:
	$(GO) run ./hack/images -out $(IMAGES_DIR) -repo $(IMAGE_REPO) -tag $(TAG)

## test-images: build every image into a temporary folder and check it: tags, entrypoints,
## users, the agent's nft in the agent's own root, and, where containerd is installed, an
## import and a run of pause (needs root; about a minute warm)
test-images:
	$(GO) test -count=1 ./hack/images/

## generate: regenerate deepcopy, CRDs, clientset, listers and informers
generate:
	hack/update-codegen.sh

## verify: fail if generated code, formatting or go.mod drifted from the sources
verify:
	hack/verify.sh

## test: unit tests, then integration tests against a real etcd and kube-apiserver
test: test-unit test-integration

test-unit:
	$(GO) test $$($(GO) list ./... | grep -v -e /test/ -e /hack/images)

# The control-plane binaries are built from the Go module proxy on first use (about 6
# minutes on 2 cores), then cached in .cache/.
# The dataplane suite runs alone: its agents renew sub-second heartbeat grants, and a
# machine busy with the other suites is not the one its failover figure is about.
test-integration:
	KUBEBUILDER_ASSETS=$$(hack/controlplane.sh) $(GO) test -count=1 $$($(GO) list ./test/... | grep -v -e /test/dataplane -e /test/e2e -e /test/realnodes)
	KUBEBUILDER_ASSETS=$$(hack/controlplane.sh) $(GO) test -count=1 ./test/dataplane/

## e2e: the end-to-end suite on the harness's local cluster (make run HARNESS=1), driven with kubectl
## and real packets (needs root; about a minute)
e2e:
	KUBEBUILDER_ASSETS=$$(hack/controlplane.sh) $(GO) test -count=1 ./test/e2e/

## chaos: randomized fault injection on the local cluster (needs root): 6 rounds of every
## fault (gateway killed, link down, partitioned; agent restarts; leader killed; API server
## restarted) in a random order, checking no split-brain, no leak and convergence after
## each; the README's test command runs one round. CHAOS_STEPS and CHAOS_SEED override.
CHAOS_STEPS ?= 42
CHAOS_SEED ?= 0
chaos:
	KUBEBUILDER_ASSETS=$$(hack/controlplane.sh) $(GO) test -count=1 -timeout 60m -run TestChaos -v ./test/dataplane/ \
		-args -chaos.steps=$(CHAOS_STEPS) -chaos.seed=$(CHAOS_SEED)

## bench: benchmarks, including admission against a real kube-apiserver with 11,000 objects,
## the aggregated API with 10,000 pods and 1,000 policies, and the dataplane (needs root)
bench:
	$(GO) test -run xxx -bench . -benchmem $$($(GO) list ./... | grep -v -e /test/ -e /hack/images)
	KUBEBUILDER_ASSETS=$$(hack/controlplane.sh) $(GO) test -count=1 -run xxx -bench . -benchtime 3000x ./test/integration/
	KUBEBUILDER_ASSETS=$$(hack/controlplane.sh) $(GO) test -count=1 -run xxx -bench . -benchtime 2000x ./test/aggregated/
	KUBEBUILDER_ASSETS=$$(hack/controlplane.sh) $(GO) test -count=1 -run xxx -bench . -benchtime 7x ./test/dataplane/

## lint: go vet and staticcheck
lint:
	$(GO) vet ./...
	$(GO) tool staticcheck $$($(GO) list ./... | grep -v /apiserver/client/)

## fuzz: each fuzz target for FUZZTIME (5 s): the heartbeat decoders (beats and answers, with
## their MACs), the admission validators, the API conversion and the preview's input
FUZZTIME ?= 5s
FUZZ_TARGETS := \
	FuzzOpenBeat:./apiserver/heartbeat \
	FuzzOpenAnswer:./apiserver/heartbeat \
	FuzzValidators:./webhook/validation \
	FuzzRoundTrip:./apiserver/apis/networking/v1alpha1 \
	FuzzValidateSpec:./apiserver/aggregated/registry/egresspreview
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzzing $${t%%:*} in $${t#*:} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) "$${t#*:}" || exit 1; \
	done

## check: everything CI runs (the README's test command): the e2e suite last
check: deps verify lint test test-images test-realnodes fuzz e2e

## run: run the whole system on this machine, in network namespaces, until Ctrl-C or make demo-down:
## real nodes (containerd, kubelet, kube-proxy, CNI) with the product installed from images
## as docs/install.md says; HARNESS=1 runs the test harness's nodes instead (no kubelet)
run: deps
ifeq ($(HARNESS),)
	KUBEBUILDER_ASSETS=$$(hack/controlplane.sh) EGRESSGW_NODES_DIR=$$(hack/nodes.sh) $(GO) run ./hack/local-cluster --pid-file .cache/demo.pid
else
	KUBEBUILDER_ASSETS=$$(hack/controlplane.sh) $(GO) run ./hack/local-cluster --harness --pid-file .cache/demo.pid
endif

## demo-down: stop what make run started (it removes everything on its way out)
demo-down:
	@if [[ -f .cache/demo.pid ]]; then kill -TERM $$(cat .cache/demo.pid); echo "stopping the local cluster"; else echo "no local cluster is running"; fi

## deps: install what a new machine lacks (Debian packages; needs root) and mount bpffs
deps:
	hack/install-deps.sh

## controlplane: build etcd, kube-apiserver and kubectl into .cache/ (a no-op once built)
controlplane:
	hack/controlplane.sh

## nodes: build kubelet, kube-proxy, kube-scheduler and kube-controller-manager into .cache/
## (a no-op once built; about 19 minutes on 2 cores the first time)
nodes:
	hack/nodes.sh

## test-realnodes: a control plane with scheduler and controller manager, and two real nodes
## (containerd, kubelet, kube-proxy, ptp CNI) in network namespaces; pods on each, reaching
## each other; then the product installed on them as docs/install.md says (images
## imported, kubectl apply -k of an overlay, every rollout); then three nodes with the
## bridge CNI, one of them on a second rack. Needs root and Debian's containerd, runc and
## containernetworking-plugins, which make deps installs; about 7 minutes warm, and
## hack/nodes.sh's build the first time.
test-realnodes:
	KUBEBUILDER_ASSETS=$$(hack/controlplane.sh) EGRESSGW_NODES_DIR=$$(hack/nodes.sh) $(GO) test -count=1 -timeout 25m -run 'TestTwoRealNodes|TestInstallOnRealNodes|TestBridgeAndRackOnRealNodes' ./test/realnodes/
