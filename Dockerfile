# syntax=docker/dockerfile:1
# The golos worker image: `golos serve` for the ECS media pool (and any container host).
# Build: scripts/build-image (docs/deployment.md, "The worker image"). Two stages: a Rust
# builder compiling the one `golos` binary in release from the locked workspace, and a small
# Debian runtime with what golos runs besides itself: espeak-ng (the local voice),
# pocketsphinx with its US English model (the local speech recognition) and CA certificates
# (every cloud provider and customer webhook is HTTPS).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
COPY . .
# The registry and target dir are cache mounts: a rebuild after a code change recompiles
# golos's own crates, not the ~400 dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p golos --bin golos \
    && install -D -m 0755 target/release/golos /out/golos

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS runtime
# Only what the product runs: no shell tools, no compilers, no test tools (sox, sipp stay out).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       ca-certificates espeak-ng pocketsphinx pocketsphinx-en-us \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 golos \
    && useradd --system --uid 10001 --gid golos --home-dir /var/lib/golos --create-home \
       --shell /usr/sbin/nologin golos
COPY --chmod=0755 infra/image/healthcheck /usr/local/bin/golos-healthcheck
COPY --from=builder /out/golos /usr/local/bin/golos

# Listen on every interface inside the container (golos's own default is loopback); the
# embedded backend keeps its SQLite and secrets under the golos user's home.
ENV GOLOS_LISTEN=0.0.0.0:8080 \
    GOLOS_DATA_DIR=/var/lib/golos
# 8080: HTTP (API in embedded mode, /ws/calls, /ws/twilio, /talk, /health, /ready);
# 9464: the operator listener when GOLOS_OPS_LISTEN=0.0.0.0:9464 (/ready, /metrics);
# 5060: SIP when GOLOS_SIP_LISTEN is set; 20000-20999: RTP (GOLOS_RTP_PORTS).
EXPOSE 8080/tcp 9464/tcp 5060/udp 5060/tcp 20000-20999/udp
USER golos:golos
WORKDIR /var/lib/golos
# SIGTERM starts the drain (/ready 503, live calls finish for up to GOLOS_DRAIN_SECS); the
# orchestrator's stop timeout must exceed GOLOS_DRAIN_SECS + 15 s (runbook).
STOPSIGNAL SIGTERM
# Liveness: /health stays 200 while draining, so a draining worker is not restarted. Load
# balancers take workers out of rotation by /ready instead (ECS: the target group's check;
# an ECS task definition's healthCheck runs the same command: ["CMD", "golos-healthcheck"]).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 CMD ["golos-healthcheck"]
ENTRYPOINT ["golos"]
CMD ["serve"]
