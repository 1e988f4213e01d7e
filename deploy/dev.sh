#!/usr/bin/env bash
# The developer's entry point. Everything it needs it installs itself (PyPI, npm, Maven Central).
#
#   deploy/dev.sh up       set up, start Kafka/Cassandra/ClickHouse engine/anvil, bootstrap, run services
#   deploy/dev.sh down     stop the services and the infrastructure (data is kept)
#   deploy/dev.sh status   what runs and where it listens
#   deploy/dev.sh test     set up, lint, type-check, and run every test (starts infrastructure itself)
#   deploy/dev.sh setup    only install .venv from requirements.lock (jars and npm come on first start)
#   deploy/dev.sh clean    stop everything and delete local data (downloads stay cached)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
RUN_DIR="${CXPT_RUN_DIR:-$ROOT/.run}"
SERVICES=(matcher risk projector gateway oracle funding devtools.feeds watcher settlement metrics wspush)
# The oracle runs on its deterministic simulated feed locally (docs/oracle.md).
export ORACLE_SIMULATED="${ORACLE_SIMULATED:-BTC-USD=65000,ETH-USD=3500}"
# anvil never reorganises by itself: 2 confirmations locally (production default 12, docs/watcher.md).
export WATCHER_CONFIRMATIONS="${WATCHER_CONFIRMATIONS:-2}"
# The gateway and ws-push share the session-token key (docs/wspush.md): random, kept in the run
# directory, never in git.
if [ -z "${GATEWAY_SESSION_SECRET:-}" ]; then
  mkdir -p "$RUN_DIR"
  [ -s "$RUN_DIR/session-secret" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN_DIR/session-secret")
  GATEWAY_SESSION_SECRET=$(cat "$RUN_DIR/session-secret")
  export GATEWAY_SESSION_SECRET
fi
cd "$ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_tools() {
  local missing=()
  for tool in python3.11 java mvn npm; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: install Python 3.11, JDK 17, Maven and Node/npm first"
}

# The interpreter for .venv: $CXPT_PYTHON if set, else the distribution's CPython 3.11 when there is
# one (built with PGO and LTO, libpython linked in: the matcher core and the Avro codec run 8-20 %
# faster on it than on a default source build such as pyenv's — docs/performance.md), else the
# python3.11 on PATH.
pick_python() {
  local candidate candidates=(/usr/bin/python3.11 "$(command -v python3.11)")
  [ -z "${CXPT_PYTHON:-}" ] || candidates=("$CXPT_PYTHON")
  for candidate in "${candidates[@]}"; do
    "$candidate" -c 'import ensurepip, sys, venv; print(sys.executable)' 2>/dev/null && return
  done
  die "no usable ${candidates[*]}: it needs Python 3.11 with venv and ensurepip (Debian: python3.11-venv)"
}

setup() {
  require_tools
  local base; base=$(pick_python)
  # A .venv made from another interpreter is made again (e.g. after this choice changed).
  if [ -x "$PY" ] && [ "$("$PY" -c 'import sys; print(sys._base_executable)')" != "$base" ]; then
    say "re-creating .venv on $base"; rm -rf "$VENV"
  fi
  if [ ! -x "$PY" ]; then say "creating .venv ($base)"; "$base" -m venv "$VENV"; fi
  local stamp="$VENV/.cxpt-installed" want
  want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python packages from requirements.lock"
    "$PY" -m pip install -q --disable-pip-version-check uv==0.13.9
    "$VENV/bin/uv" pip install -q --python "$PY" -r requirements.lock
    "$VENV/bin/uv" pip install -q --python "$PY" --no-deps -e .
    echo "$want" > "$stamp"
  fi
}

start_services() {
  mkdir -p "$RUN_DIR/services"
  for svc in "${SERVICES[@]}"; do
    local pidfile="$RUN_DIR/services/$svc.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "  $svc already running (pid $(cat "$pidfile"))"; continue
    fi
    LOG_JSON=true nohup "$PY" -m "services.$svc" >"$RUN_DIR/services/$svc.log" 2>&1 &
    echo $! >"$pidfile"
    echo "  $svc started (pid $!), log $RUN_DIR/services/$svc.log"
  done
}

stop_services() {
  for svc in "${SERVICES[@]}"; do
    local pidfile="$RUN_DIR/services/$svc.pid"
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "  $svc stopped"
    fi
    rm -f "$pidfile"
  done
}

cmd=${1:-help}
case "$cmd" in
  setup) setup ;;
  up)
    setup
    say "starting infrastructure"
    "$PY" -m deploy.local start
    say "bootstrapping topics, schemas and store migrations"
    # ClickHouse is embedded locally (one process per data path): the metrics service migrates it.
    "$PY" -m services.common.bootstrap --skip-clickhouse
    say "compiling contracts (first run: npm ci) and deploying mock Chainlink feeds missing on the chain"
    "$PY" -m services.chain.mocks ensure
    # The oracle reads them (Chainlink through web3) next to the simulated feed, which devtools.feeds
    # makes them follow (docs/oracle-sources.md).
    export "$("$PY" -m services.chain.mocks env)"
    say "deploying the exchange (MockUSDC, CXPT, Vault proxy) unless the deployment file's Vault is live"
    "$PY" -m services.chain.deploy
    say "starting services"
    start_services
    say "CXPT Exchange is up — see README 'First steps'; stop with: deploy/dev.sh down"
    ;;
  down) stop_services; "$PY" -m deploy.local stop ;;
  status)
    "$PY" -m deploy.local status
    for svc in "${SERVICES[@]}"; do
      pidfile="$RUN_DIR/services/$svc.pid"
      if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "$svc: running (pid $(cat "$pidfile"))"
      else echo "$svc: stopped"; fi
    done
    ;;
  clean) stop_services; "$PY" -m deploy.local clean ;;
  test)
    setup
    say "lint (ruff) and types (mypy)"
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy" services deploy tests
    say "schemas registered and BACKWARD_TRANSITIVE compatible"
    "$PY" -m services.common.schemas check
    say "tests (unit, then integration on real infrastructure)"
    shift
    "$PY" -m pytest "$@"
    ;;
  *) sed -n '2,10p' "$0"; [ "$cmd" = help ] ;;
esac
