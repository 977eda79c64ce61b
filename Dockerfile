# syntax=docker/dockerfile:1
#
# One image per binary, each a target of this file named as its image:
#
#   docker build --target egressgw-webhook    -t egressgw/egressgw-webhook:dev .
#   docker build --target egressgw-controller -t egressgw/egressgw-controller:dev .
#   docker build --target egressgw-apiserver  -t egressgw/egressgw-apiserver:dev .
#   docker build --target egressgw-agent      -t egressgw/egressgw-agent:dev .
#
# `make images` builds the same images without docker or a registry (hack/images), from the
# same sources with the same go build flags, entrypoints and users, as tarballs for
# `ctr -n k8s.io images import`: FROM scratch rather than distroless for the control plane,
# and, for the agent, this machine's nft with its libraries rather than Debian slim. Change
# one, change the other.
#
# Why one per binary rather than one image with all four: the control-plane images run as
# non-root on a base with no shell and no packages, while the node agent runs privileged and
# needs nft (it applies its table with nft -f). One shared image would put nft and a shell
# next to the webhook and the API servers, which need neither. The four binaries are built
# together in one stage, so the Go build runs once for all targets.
#
# No clang: the BPF object (bpf/egw_bpfel.o) is committed and embedded in the agent.

# The Go of go.mod's go line (1.26). The build stage runs on the builder's platform and
# cross-compiles: with CGO off, any GOARCH the BPF object supports (little-endian) builds.
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/ \
        ./webhook/cmd/egressgw-webhook \
        ./controller/cmd/egressgw-controller \
        ./apiserver/aggregated/cmd/egressgw-apiserver \
        ./nodeagent/cmd/egressgw-agent

# The control plane: static binaries on distroless, as the numeric non-root user the
# Deployments' runAsNonRoot can verify.
FROM gcr.io/distroless/static-debian12:nonroot AS egressgw-webhook
COPY --from=build /out/egressgw-webhook /usr/local/bin/egressgw-webhook
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/egressgw-webhook"]

FROM gcr.io/distroless/static-debian12:nonroot AS egressgw-controller
COPY --from=build /out/egressgw-controller /usr/local/bin/egressgw-controller
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/egressgw-controller"]

FROM gcr.io/distroless/static-debian12:nonroot AS egressgw-apiserver
COPY --from=build /out/egressgw-apiserver /usr/local/bin/egressgw-apiserver
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/egressgw-apiserver"]

# The node agent: Debian slim for nft (package nftables), which the agent runs; sleep, from
# coreutils, holds the pods of artifacts/uninstall. It runs as root, privileged (see
# artifacts/nodeagent/daemonset.yaml). Last, so that a build without --target makes it.
FROM debian:trixie-slim AS egressgw-agent
RUN apt-get update \
    && apt-get install -y --no-install-recommends nftables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/egressgw-agent /usr/local/bin/egressgw-agent
ENTRYPOINT ["/usr/local/bin/egressgw-agent"]
