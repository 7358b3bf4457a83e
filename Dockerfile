# The operator image the chart runs (`ordinal run`, and `ordinal backup …` /
# `ordinal restore …` in Jobs and init containers). Not built in CI here (no
# container engine on the build machines); the devcluster runs the same binary
# directly.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ordinal

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ordinal /ordinal
USER 65532:65532
ENTRYPOINT ["/ordinal"]
