#!/usr/bin/env bash
# Project-local tools, pinned, built or fetched once into .tools/ (git-ignored) from registries.
#
#   deploy/tools.sh helm            Helm, `go install`ed through the Go module proxy  → .tools/bin/helm
#   deploy/tools.sh compose-schema  the Compose Specification JSON schema, from the npm package
#                                   dclint (it ships the spec's schema)   → .tools/compose/compose.schema.json
#
# Each prints the path it provides. A second call is instant: a stamp records the pinned version.
# Needs Go (PATH or /usr/local/go/bin) for helm and npm for compose-schema; nothing else.
set -euo pipefail

HELM_VERSION=v3.21.4
DCLINT_VERSION=3.1.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.tools"
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

helm_tool() {
  local bin="$TOOLS/bin/helm" stamp="$TOOLS/bin/.helm-version"
  if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$HELM_VERSION" ]; then echo "$bin"; return; fi
  local go; go=$(command -v go || true)
  [ -n "$go" ] || go=/usr/local/go/bin/go
  [ -x "$go" ] || die "Go is needed to build Helm (go install through the module proxy)"
  mkdir -p "$TOOLS/bin"
  # The module and build caches stay Go's own (shared, reused by later builds); only the binary
  # lands in .tools/bin. The version is stamped into the binary as the release builds do.
  GOBIN="$TOOLS/bin" GOFLAGS=-modcacherw CGO_ENABLED=0 "$go" install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  echo "$HELM_VERSION" >"$stamp"
  echo "$bin"
}

compose_schema() {
  local dir="$TOOLS/compose" out="$TOOLS/compose/compose.schema.json" stamp="$TOOLS/compose/.dclint-version"
  if [ -s "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$DCLINT_VERSION" ]; then echo "$out"; return; fi
  command -v npm >/dev/null || die "npm is needed to fetch the compose schema"
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  (cd "$tmp" && npm pack --silent "dclint@$DCLINT_VERSION" >/dev/null)
  tar -xzf "$tmp/dclint-$DCLINT_VERSION.tgz" -C "$tmp" package/schemas/compose.schema.json
  mkdir -p "$dir"
  mv "$tmp/package/schemas/compose.schema.json" "$out"
  echo "$DCLINT_VERSION" >"$stamp"
  echo "$out"
}

case "${1:-}" in
  helm) helm_tool ;;
  compose-schema) compose_schema ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
