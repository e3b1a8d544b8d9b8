#!/usr/bin/env bash
# What the HLS tests need beyond the base tools: Debian's Chromium (the browser test drives it
# headless; never a downloaded browser build) and the npm packages in tests/browser (hls.js and
# playwright-core, pinned by its package-lock.json). Quiet and idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install/hls: installing ${missing[*]} with apt-get" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# npm ci only when the lock changed since the last install (a copy of it is kept as a stamp).
cd tests/browser
if ! cmp -s package-lock.json node_modules/.installed-lock.json 2>/dev/null; then
  echo "install/hls: npm ci in tests/browser" >&2
  # playwright-core never downloads browsers itself; the variable also guards older versions.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null
  cp package-lock.json node_modules/.installed-lock.json
fi
