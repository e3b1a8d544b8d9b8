#!/usr/bin/env bash
# Cluster benchmarks, on loopback with real redis-server, nats-server and ffmpeg:
#  1. snapshot transfer: a new slave loads an 8-hour 128 kbps buffer (about 460 MB) from the
#     master (goal: under 2 s);
#  2. live latency: how much later a slave's listener gets audio than a listener on the master,
#     and how long after a chunk is complete on the master it reaches a slave's listener
#     (goal: under 50 ms above the chunk duration at p99).
# The code is tests/tests/cluster_bench.rs; results are kept in bench/RESULTS-cluster.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for tool in redis-server nats-server ffmpeg; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install/*.sh" >&2; exit 1; }
done
cargo test --release --locked -p streammachine-e2e --test cluster_bench -- \
  --ignored --nocapture --test-threads=1 "$@" 2>&1 | grep -v '^\[server '
