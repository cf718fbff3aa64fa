# syntax=docker/dockerfile:1
# One image for the whole mesh: the `baemin` binary runs any service (`baemin serve call|rider|payment|
# report|gateway`), which is what the Helm chart starts. The dashboard's built assets are compiled into
# the binary (services/gateway/dashboard/dist is committed), so no Node is needed here.
#
#   docker build -t ghcr.io/baemin-riders/baemin:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them (cached by the lock file).
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY proto proto
COPY mesh mesh
COPY services services
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p baemin \
 && install -D -m 0755 target/release/baemin /out/baemin

# glibc, CA roots, a nonroot user (65532), no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/baemin /usr/local/bin/baemin
USER 65532:65532
# gRPC (and grpc-web on the gateway), then the admin port (metrics, probes): gRPC port + 1000.
EXPOSE 8080 8081 8082 8083 8084 9080 9081 9082 9083 9084
ENTRYPOINT ["/usr/local/bin/baemin"]
CMD ["serve", "gateway"]
