# qqmail-proxy container image: one static binary, no shell, non-root (uid 65532).
#
#   docker build -t qqmail-proxy .
#   docker run -d --name qqmail-proxy -p 127.0.0.1:2525:2525 \
#     -e QQMAIL_EMAIL=12345@qq.com -e QQMAIL_AUTH_CODE=abcdefghijklmnop \
#     -v qqmail-state:/var/lib/qqmail-proxy qqmail-proxy
#   docker logs qqmail-proxy     # the generated local login is printed once, on first start
#
# Configured by QQMAIL_* environment variables (QQMAIL_AUTH_CODE_FILE / QQMAIL_USERS_FILE
# for Docker secrets) or a mounted file named by QQMAIL_CONFIG; see the README.
#
# Two ways to get the binary, chosen with BINARY_FROM:
#   build     (default) compile it in BUILD_IMAGE;
#   prebuilt  copy a static binary built on the host, without pulling any image:
#             the build context then holds only `qqmail-proxy` and an empty directory
#             `state/`; with RUNTIME_IMAGE=scratch nothing at all is pulled (that is how
#             CI builds it, see tests/docker/run.sh). Another architecture's image comes
#             from that architecture's static binary with `--platform linux/arm64`
#             (podman: `--arch arm64`); packaging/build.sh builds both.

ARG BUILD_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot
ARG BINARY_FROM=build

# --- build: a statically linked glibc binary ------------------------------------------
# crt-static instead of musl: glibc 2.36 resolves /etc/hosts and DNS without NSS modules,
# so the binary runs in scratch/distroless. `--target` keeps RUSTFLAGS away from build
# scripts and proc macros, which cannot be static. `--features legacy-tls`: TLS 1.0/1.1
# for old printers on the local side (QQMAIL_TLS_MIN_VERSION=1.0) through a vendored
# OpenSSL, compiled here from source (the image has gcc, perl and make) and linked
# statically; it is off unless that variable or `[tls] min_version` asks for it.
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-gnu" \
    && RUSTFLAGS='-C target-feature=+crt-static' \
       cargo build --release --locked --features legacy-tls --target "$target" --bin qqmail-proxy \
    && mkdir -p /out/var-lib/qqmail-proxy \
    && chmod 0700 /out/var-lib/qqmail-proxy \
    && cp "target/$target/release/qqmail-proxy" /out/qqmail-proxy

# --- prebuilt: a binary from the build context ------------------------------------------
# scratch has no mkdir: the empty state directory comes from the context too.
FROM scratch AS prebuilt
COPY qqmail-proxy /out/qqmail-proxy
COPY state/ /out/var-lib/qqmail-proxy/

# Only the stage named by BINARY_FROM is built (BuildKit and buildah skip unused stages).
FROM ${BINARY_FROM} AS binary

# --- runtime ---------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="qqmail-proxy" \
      org.opencontainers.image.description="Local SMTP/IMAP/POP3 gateway for QQ Mail and peers: plain or STARTTLS in, verified TLS with the authorization code out" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=binary /out/qqmail-proxy /qqmail-proxy
# Copied as the content of /var/lib so that --chown also applies to the directory itself.
COPY --from=binary --chown=65532:65532 /out/var-lib/ /var/lib/
# Unprivileged ports: no capability needed. 0.0.0.0 inside the container; publish them
# on 127.0.0.1 (or a LAN address for printers) with -p.
# MALLOC_MMAP_THRESHOLD_: argon2's 19 MiB working memory goes back to the system after
# each password check instead of staying in glibc's heap (RSS ~7 MiB instead of ~27).
# QQMAIL_DEFAULTS=container: listeners on 0.0.0.0:2525/1143/1110 and state in the volume
# — as defaults only: a mounted config (QQMAIL_CONFIG) wins over them, and -e variables
# win over the file.
ENV QQMAIL_DEFAULTS=container \
    MALLOC_MMAP_THRESHOLD_=131072
USER 65532:65532
VOLUME ["/var/lib/qqmail-proxy"]
EXPOSE 2525 1143 1110
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/qqmail-proxy", "healthcheck"]
ENTRYPOINT ["/qqmail-proxy"]
CMD ["serve"]
