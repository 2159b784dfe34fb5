# order-gateway container image.
#
#   docker build -t order-gateway:local .
#   docker run --rm -p 8080:8080 -e KAFKA_BROKERS=... -e MONGODB_URI=... order-gateway:local
#
# Without KAFKA_BROKERS / MONGODB_URI the gateway starts its embedded broker and
# store under DATA_DIR (/data); mount a volume there to keep their data.

# ---- build stage ---------------------------------------------------------
# The tag must be at least go.mod's `go` line: the golang image sets
# GOTOOLCHAIN=local, so an older toolchain refuses to build (compose_test.go
# checks this).
FROM golang:1.26.8-bookworm AS build
WORKDIR /src

# Modules first, in their own layer: re-downloaded only when go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
# Pure Go (the embedded store uses modernc.org/sqlite), so a static binary
# that runs on distroless/static. The cache mount (BuildKit) keeps the
# compile cache between builds.
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -o /out/order-gateway . \
 && mkdir -p /out/data

# ---- runtime stage -------------------------------------------------------
# No shell, no package manager, runs as uid/gid 65532 (nonroot). distroless
# publishes no version tags: for a reproducible image replace the tag with its
# digest (docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot).
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/order-gateway /order-gateway
# An empty DATA_DIR owned by nonroot, so the embedded broker/store can write
# there (an image path that does not exist would be created root-owned).
COPY --from=build --chown=65532:65532 /out/data /data

ENV LISTEN_ADDR=:8080 DATA_DIR=/data
EXPOSE 8080
USER nonroot
# GET /healthz (alive) and GET /readyz (200 when broker and store answer).
# No HEALTHCHECK: distroless has no shell or curl to run one.
ENTRYPOINT ["/order-gateway"]
