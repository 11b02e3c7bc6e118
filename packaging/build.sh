#!/usr/bin/env bash
# Release artifacts for Linux x86_64 and aarch64 (Raspberry Pi, ARM NAS), built offline on
# an x86_64 Debian bookworm machine:
#
#   bash packaging/build.sh [x86_64|aarch64|all]        (default: all)
#
# into dist/ (QQMAIL_DIST=dir to change it):
#   qqmail-proxy-<version>-<target>         static binary (glibc crt-static)
#   qqmail-proxy_<version>_<amd64|arm64>.deb  Debian/Ubuntu package (packaging/debian/)
#   qqmail-proxy-<version>-linux-<arch>.tar  container image (`docker load -i` / `podman load -i`)
#   SHA256SUMS                               over every file above
#
# x86_64 builds with the rustup toolchain, exactly as `cargo build` does. aarch64 builds
# with Debian's rustc-web (its arm64 std from libstd-rust-web-dev:arm64) and the
# aarch64-linux-gnu cross gcc, in its own target dir (target/cross), called by full path
# so that rustup's cargo/rustc stay first on PATH. Installs what it needs with apt.
#
# QQMAIL_BINARY_X86_64 / QQMAIL_BINARY_AARCH64=path: package that static binary instead
# of building one (the CI test uses a debug build for x86_64 to stay within its budget).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
what=${1:-all}
case $what in
  x86_64) arches=(x86_64) ;;
  aarch64) arches=(aarch64) ;;
  all) arches=(x86_64 aarch64) ;;
  *) echo "usage: packaging/build.sh [x86_64|aarch64|all]" >&2; exit 2 ;;
esac
dist=${QQMAIL_DIST:-$repo/dist}
mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
log() { echo "build: $*"; }

# --- tools --------------------------------------------------------------------------------
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
apt_install() { # packages... (only the missing ones)
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}
apt_install podman runc file lintian
for arch in "${arches[@]}"; do
  if [ "$arch" = aarch64 ] && [ -z "${QQMAIL_BINARY_AARCH64:-}" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      log "dpkg --add-architecture arm64 (for libstd-rust-web-dev:arm64)"
      $sudo dpkg --add-architecture arm64
    fi
    apt_install rustc-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  fi
done
PATH=$PATH:/usr/sbin

# --- binaries -----------------------------------------------------------------------------
# Debian's rustc from rustc-web, wherever the package puts it (not the rustup proxy).
debian_rustc() {
  dpkg -L rustc-web | grep -E '/bin/rustc(-web)?$' | head -n 1
}
build_binary() { # arch -> path of the static binary
  local arch=$1 triple=$1-unknown-linux-gnu override
  case $arch in
    x86_64) override=${QQMAIL_BINARY_X86_64:-} ;;
    aarch64) override=${QQMAIL_BINARY_AARCH64:-} ;;
  esac
  if [ -n "$override" ]; then
    echo "$override"
    return
  fi
  # crt-static through CARGO_TARGET_<triple>_RUSTFLAGS: it reaches the target's crates
  # only, never build scripts or proc macros (which cannot be static).
  # x86_64 carries legacy-tls (TLS 1.0/1.1 for old printers; OpenSSL linked statically),
  # as the Docker image does. aarch64 does not yet: OpenSSL would have to be cross-compiled
  # too (on a Pi, `docker build .` or `cargo build --release --features legacy-tls` has it).
  if [ "$arch" = x86_64 ]; then
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --release --locked --features legacy-tls --target "$triple" --bin qqmail-proxy >&2
    echo "$repo/target/$triple/release/qqmail-proxy"
  else
    local rustc
    rustc=$(debian_rustc)
    [ -x "$rustc" ] || { echo "build: Debian's rustc (rustc-web) not found" >&2; return 1; }
    RUSTC=$rustc CARGO_TARGET_DIR=$repo/target/cross \
      CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
      CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
      AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
      CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --release --locked --target "$triple" --bin qqmail-proxy >&2
    echo "$repo/target/cross/$triple/release/qqmail-proxy"
  fi
}

work=$(mktemp -d /tmp/qqmail-package.XXXXXX)
trap 'rm -rf "$work" 2>/dev/null || { chmod -R u+w "$work"; rm -rf "$work"; }' EXIT
# --- the .deb -----------------------------------------------------------------------------
# dpkg-deb from a small tree: no extra crate to build or fetch, and every file, mode and
# maintainer script is in packaging/debian/ to read.
make_deb() { # binary, debarch -> dist/qqmail-proxy_<version>_<debarch>.deb
  local bin=$1 debarch=$2 tree=$work/deb-$2 doc
  doc=$tree/usr/share/doc/qqmail-proxy
  install -d -m 0755 "$tree/DEBIAN" "$tree/usr/bin" "$tree/lib/systemd/system" \
    "$tree/etc/qqmail-proxy" "$doc" "$tree/usr/share/lintian/overrides"
  install -m 0755 "$bin" "$tree/usr/bin/qqmail-proxy"
  service >"$tree/lib/systemd/system/qqmail-proxy.service"
  chmod 0644 "$tree/lib/systemd/system/qqmail-proxy.service"
  config >"$tree/etc/qqmail-proxy/config.toml"
  # root:root in the archive (no such group yet); the postinst makes it root:qqmail-proxy.
  chmod 0640 "$tree/etc/qqmail-proxy/config.toml"
  install -m 0644 packaging/debian/copyright "$doc/copyright"
  sed -e "s/@VERSION@/$version/" -e "s/@COMMIT@/$commit/" \
    -e "s/@DATE@/$(git log -1 --format=%aD 2>/dev/null || date -R)/" \
    packaging/debian/changelog.in | gzip -9n >"$doc/changelog.gz"
  chmod 0644 "$doc/changelog.gz"
  install -m 0644 packaging/debian/lintian-overrides "$tree/usr/share/lintian/overrides/qqmail-proxy"
  install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$tree/DEBIAN/"
  install -m 0644 packaging/debian/conffiles "$tree/DEBIAN/conffiles"
  sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$debarch/" \
    -e "s/@SIZE@/$(du -sk --exclude=DEBIAN "$tree" | cut -f1)/" \
    packaging/debian/control.in >"$tree/DEBIAN/control"
  (cd "$tree" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' \
    | sort -z | xargs -0 md5sum) >"$tree/DEBIAN/md5sums"
  chmod 0644 "$tree/DEBIAN/control" "$tree/DEBIAN/md5sums"
  dpkg-deb --root-owner-group -Zxz --build "$tree" "$dist/qqmail-proxy_${version}_$debarch.deb" >/dev/null
}
# The repository's unit with the package's paths and a fixed system user (the package
# creates it, and the state directory must belong to it across restarts).
service() {
  echo "# qqmail-proxy as a sandboxed systemd service (installed by the qqmail-proxy package)."
  echo "# Settings: /etc/qqmail-proxy/config.toml; the authorization code: QQMAIL_AUTH_CODE in"
  echo "# /etc/qqmail-proxy/env (mode 0600, read by systemd as root). Override with"
  echo "# \`systemctl edit qqmail-proxy\`."
  echo
  sed -e '1,/^$/d' \
    -e 's|/usr/local/bin/qqmail-proxy|/usr/bin/qqmail-proxy|' \
    -e 's|/etc/qqmail-proxy/qqmail-proxy.toml|/etc/qqmail-proxy/config.toml|' \
    -e 's|^DynamicUser=yes$|User=qqmail-proxy\nGroup=qqmail-proxy|' \
    config/qqmail-proxy.service
}
# config/example.toml with the package's state directory.
config() {
  echo "# qqmail-proxy settings (installed by the qqmail-proxy package, a dpkg conffile: your"
  echo "# edits survive upgrades). Set email below, put QQMAIL_AUTH_CODE=... in"
  echo "# /etc/qqmail-proxy/env (mode 0600), then: systemctl enable --now qqmail-proxy"
  echo "# Checked with: qqmail-proxy check-config --config /etc/qqmail-proxy/config.toml"
  echo "#"
  # Without the example's own copy/check/start lines (they name config/qqmail-proxy.toml).
  sed -e 's|^state_dir = "certs"|state_dir = "/var/lib/qqmail-proxy"|' \
    -e '/^# Copy to config\/qqmail-proxy.toml/d' -e '/^# Check it:/d' -e '/^# Start it:/d' \
    config/example.toml
}

# --- the image ----------------------------------------------------------------------------
# The Dockerfile's prebuilt path on scratch: nothing is pulled. Podman keeps its storage
# under $work, so the host's image store is left as it was.
pm() {
  podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/tmp" \
    --storage-driver vfs --cgroup-manager cgroupfs --events-backend file --runtime runc "$@"
}
make_image() { # binary, debarch -> dist/qqmail-proxy-<version>-linux-<debarch>.tar
  local bin=$1 debarch=$2 ctx=$work/ctx-$2 tag=localhost/qqmail-proxy:$version-$2
  mkdir -p "$ctx/state" "$work/tmp"
  chmod 0700 "$ctx/state"
  cp "$bin" "$ctx/qqmail-proxy"
  pm build --isolation chroot --pull=never --format docker -q --arch "$debarch" \
    --build-arg BINARY_FROM=prebuilt --build-arg RUNTIME_IMAGE=scratch \
    -f "$repo/Dockerfile" -t "$tag" "$ctx" >/dev/null
  rm -f "$dist/qqmail-proxy-$version-linux-$debarch.tar"
  pm save -q --format docker-archive -o "$dist/qqmail-proxy-$version-linux-$debarch.tar" "$tag"
}

for arch in "${arches[@]}"; do
  started=$(date +%s)
  triple=$arch-unknown-linux-gnu
  case $arch in x86_64) debarch=amd64 ;; aarch64) debarch=arm64 ;; esac
  bin=$(build_binary "$arch")
  out=$dist/qqmail-proxy-$version-$triple
  install -m 0755 "$bin" "$out"
  if ! file -b "$out" | grep -q 'statically linked\|static-pie linked'; then
    echo "build: $out is not statically linked: $(file -b "$out")" >&2
    exit 1
  fi
  log "$(basename "$out") ($(($(date +%s) - started)) s)"
  make_deb "$out" "$debarch"
  log "qqmail-proxy_${version}_$debarch.deb"
  make_image "$out" "$debarch"
  log "qqmail-proxy-$version-linux-$debarch.tar (image localhost/qqmail-proxy:$version-$debarch)"
done

(cd "$dist" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%P\n' | sort \
  | xargs -r sha256sum >SHA256SUMS)
log "SHA256SUMS: $(wc -l <"$dist/SHA256SUMS") files in $dist"
