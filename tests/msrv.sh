#!/usr/bin/env bash
# Checks that Cargo.toml's rust-version is the real minimum: no locked dependency (for
# this platform, dev-dependencies included, since the tests build them too) asks for a
# newer Rust. Ends with one "msrv: N passed, M failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
ours=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$ours" ] || { echo "msrv: Cargo.toml has no rust-version"; echo "msrv: 0 passed, 1 failed"; exit 1; }
cargo metadata --format-version 1 --locked --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" \
  | python3 -c '
import json, sys
ours = sys.argv[1]
def key(v): return tuple((list(map(int, v.split("."))) + [0, 0])[:3])
m = json.load(sys.stdin)
need = max(((key(p.get("rust_version") or "0"), p["rust_version"] or "0", p["name"]) for p in m["packages"]
            if p["name"] != "qqmail-proxy"))[1:]
if key(need[0]) > key(ours):
    print(f"msrv: Cargo.toml says rust-version = {ours}, but {need[1]} needs Rust {need[0]}: raise it (and the README)")
    print("msrv: 0 passed, 1 failed"); sys.exit(1)
if key(need[0]) < key(ours):
    print(f"msrv: note: dependencies need only Rust {need[0]} ({need[1]}); rust-version = {ours}")
print(f"msrv: rust-version {ours} covers every locked dependency (newest need: {need[1]} {need[0]})")
print("msrv: 1 passed, 0 failed")
' "$ours"
