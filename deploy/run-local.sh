#!/usr/bin/env bash
# Runs Berth locally: builds if needed, starts berth-core (deploy/core.yaml) and berth-proxy
# (deploy/proxy.yaml, development certificates generated on first start), supervises both, and
# stops both on Ctrl-C or when either exits.
set -euo pipefail
cd "$(dirname "$0")/.."

# The whole workspace, so features unify with test and bench builds and nothing rebuilds.
cargo build --release --workspace --bins
bin="${CARGO_TARGET_DIR:-target}/release"

"$bin/berth-core" check-config deploy/core.yaml
"$bin/berth-proxy" check-config deploy/proxy.yaml

"$bin/berth-core" serve --config deploy/core.yaml &
core=$!
"$bin/berth-proxy" serve --config deploy/proxy.yaml &
edge=$!

stop() {
  trap - INT TERM EXIT
  kill -INT "$edge" 2>/dev/null || true
  kill -TERM "$core" 2>/dev/null || true
  wait "$edge" "$core" 2>/dev/null || true
}
trap stop INT TERM EXIT

cat <<MSG
Berth is running:
  https://localhost:5443   (edge -> docker-hosted: push here)   CA: .berth/proxy/certs/ca.crt
  https://localhost:5444   (edge -> docker-group: pull here; hosted, then Docker Hub)
  http://127.0.0.1:8082    (core connector, docker-hosted)
  http://127.0.0.1:8081/berth/health
Trust the CA for docker:  $bin/berth-certs docker-trust localhost:5443 --ca .berth/proxy/certs
Ctrl-C stops both.
MSG

# Whichever exits first takes the other down with it.
wait -n "$core" "$edge"
