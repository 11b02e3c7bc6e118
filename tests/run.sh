#!/usr/bin/env bash
# The whole test suite (the README's test command): installs the outside tools, then runs
# the unit and integration tests, the interop suite against real Dovecot + Postfix, short
# fuzzing runs and a short benchmark. Ends with one "N passed, M failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed_steps=()
step() {
  local name=$1; shift
  echo "=== $name"
  if "$@" 2>&1 | tee -a "$log"; then :; else failed_steps+=("$name"); fi
}

# The legacy-tls feature's OpenSSL: the system's static libraries (libssl-dev, installed
# above) instead of the vendored source build, which the test, docker and packaging builds
# would each compile again (minutes apiece on two cores). OPENSSL_STATIC keeps the docker
# step's crt-static link possible; .ci/run sets the same, so clippy's build is reused.
# The Dockerfile's own build stays vendored.
export OPENSSL_NO_VENDOR=1 OPENSSL_STATIC=1

# Cargo.toml's rust-version must be the real minimum of the locked tree.
step "msrv" bash tests/msrv.sh
# One build for everything, with the legacy-tls feature (OpenSSL for TLS 1.0/1.1 on the
# local side): its tests (tests/it/local_tls/old_tls.rs) need it, and the feature-less
# start-up error is a unit test of both answers (config::local_tls::min_version), so no
# second build is needed.
step "cargo test" cargo test --all-targets --features legacy-tls --no-fail-fast
# The container recipe reuses that build (a static link of the same objects, same features).
step "docker (podman, offline)" bash tests/docker/run.sh
# Release artifacts (packaging/build.sh all): the static aarch64 binary and the arm64 image
# under qemu, both .deb packages in a throwaway root, lintian.
step "packaging (aarch64 under qemu, images, .deb)" bash tests/packaging/run.sh
# Fuzzing smoke: every target for a few seconds (CI budget); see fuzz/README.md for long runs.
fuzz_smoke() {
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked || return 1
  local n
  n=$(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list | wc -l)
  if FUZZ_SANITIZER=none bash fuzz/run.sh "${FUZZ_SECONDS:-10}"; then
    echo "fuzz: $n passed, 0 failed"
  else
    echo "fuzz: 0 passed, 1 failed"; return 1
  fi
}
step "fuzz (libFuzzer, short)" fuzz_smoke
# The interop suite drives the binary `cargo test` just built.
step "interop (Dovecot + Postfix)" env QQMAIL_PROXY_BIN="${CARGO_TARGET_DIR:-target}/debug/qqmail-proxy" \
  bash tests/interop/run.sh
# Short benchmark run (bench/RESULTS-quick.md), so the harness cannot rot; the full run
# is `bash bench/run.sh` (bench/RESULTS.md).
step "bench (quick)" env QQMAIL_PROXY_BIN="${CARGO_TARGET_DIR:-target}/debug/qqmail-proxy" \
  bash bench/run.sh --quick

passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s+=$6} END {print s+0}')
# Suites that print their own "N passed, M failed" line (interop, docker) are added in.
own=$(grep -E '^([a-z-]+: )?[0-9]+ passed, [0-9]+ failed$' "$log")
passed=$((passed + $(echo "$own" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')))
failed=$((failed + $(echo "$own" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')))
if [ ${#failed_steps[@]} -gt 0 ]; then
  echo "failed steps: ${failed_steps[*]}"
  [ "$failed" -eq 0 ] && failed=${#failed_steps[@]}
fi
echo "total: $passed passed, $failed failed"
[ ${#failed_steps[@]} -eq 0 ]
