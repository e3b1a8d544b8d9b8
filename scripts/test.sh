#!/usr/bin/env bash
# Install everything the tests need, then run every check: formatting, lints, and the whole test
# suite (unit, end-to-end with real ffmpeg/redis/nats/chromium, operator against a fake API
# server, Helm chart). Safe to run again: installs are skipped when already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for script in scripts/install/*.sh; do
  "$script"
done
scripts/k8s-tools.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests run the real binaries: build them once up front.
cargo build --workspace --bins --locked
if command -v cargo-nextest >/dev/null; then
  # One process per test: the end-to-end tests run in parallel across test binaries.
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
