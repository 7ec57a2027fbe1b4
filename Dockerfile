# One image for the four CRS services and crsctl. The Helm chart (charts/crs) runs each service
# from it by naming its binary: /usr/local/bin/crs-intake, crs-triage, crs-legal-review,
# crs-notification.
#
#   docker build -t registry.example.com/crs/crs:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p crs-intake -p crs-triage -p crs-legal-review -p crs-notification -p crsctl \
    && mkdir -p /out \
    && cp target/release/crs-intake target/release/crs-triage target/release/crs-legal-review \
          target/release/crs-notification target/release/crsctl /out/

# glibc and libgcc, no shell, no package manager; runs as the unprivileged user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 50051 9100
CMD ["/usr/local/bin/crsctl", "--help"]
