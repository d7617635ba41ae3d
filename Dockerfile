# Builds the connector image: docker build -t source-postgres:dev .
#
# The base images are build arguments so that a build without access to
# their registries can substitute its own: the image test
# (source-postgres/image_test.go) builds local stand-ins.
ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0 makes a static binary, which the base image below needs: it
# has no C library. The cache mount keeps compiled packages between builds,
# so a rebuild compiles only what changed.
# VERSION is what `source-postgres --version` prints (the build has no .git
# to take a revision from): docker build --build-arg VERSION=v1.2.3 .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/source-postgres ./source-postgres

FROM ${BASE_IMAGE}
COPY --from=build /out/source-postgres /usr/local/bin/source-postgres
# The runtime takes the image for a capture by FLOW_RUNTIME_PROTOCOL, and
# flow-connector-init, which it runs in the container, picks the codec by
# FLOW_RUNTIME_CODEC (the label, else the environment); the connector reads
# the environment, so both say proto. Estuary's own images also carry
# CONNECTOR_PROTOCOL=flow-capture.
LABEL CONNECTOR_PROTOCOL=flow-capture \
      FLOW_RUNTIME_PROTOCOL=capture \
      FLOW_RUNTIME_CODEC=proto
ENV FLOW_RUNTIME_CODEC=proto
# The base image's nonroot user, by number: Kubernetes' runAsNonRoot can
# only verify a numeric user.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/source-postgres"]
