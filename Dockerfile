# syntax=docker/dockerfile:1
# biometric-bridge: one binary, run as `biometric-bridge ingress` or `biometric-bridge process`
# (see docker-compose.yml).

# ---- build ------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
# librdkafka is built from source by rdkafka-sys (cmake for its cmake build; the image
# already has a C toolchain, perl and the zlib headers). Its TLS links the system OpenSSL
# (libssl-dev, found through pkg-config): seconds to link, where a vendored OpenSSL would add
# minutes of C build, and the runtime image gets Debian's security updates for it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the crates and the target dir between builds (BuildKit); the binary is
# copied out of the cached target dir, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && cp target/release/biometric-bridge /usr/local/bin/biometric-bridge

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to the vendors' APIs and to managed Kafka clusters' public CAs;
# libssl3: librdkafka's TLS (SASL_SSL / SSL listeners)
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin bridge
COPY --from=build /usr/local/bin/biometric-bridge /usr/local/bin/biometric-bridge
USER 10001:10001
# ingress HTTP (BRIDGE_HTTP_ADDR); the processor's metrics (PROCESSOR_METRICS_ADDR)
EXPOSE 8889 9464
ENTRYPOINT ["/usr/local/bin/biometric-bridge"]
