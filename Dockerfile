# One multi-stage image for the four K-ERP services; compose picks the binary with `command`. protoc comes from the
# protoc-bin-vendored crate at build time, so the build stage needs no protobuf package.
FROM rust:1-bookworm AS build
# rdkafka's cmake-build bundles librdkafka and needs these to compile it.
RUN apt-get update && apt-get install -y --no-install-recommends \
        cmake pkg-config libcurl4-openssl-dev libssl-dev libsasl2-dev zlib1g-dev libzstd-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
    && mkdir /out && cp target/release/ingest-api target/release/stream-workers target/release/query-api target/release/grpc-api /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates libcurl4 libssl3 libsasl2-2 zlib1g libzstd1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 kerp
COPY --from=build /out/ /usr/local/bin/
USER kerp
# Overridden per service in compose/compose.yaml.
CMD ["ingest-api"]
