#!/usr/bin/env bash
# Set up everything guiagent needs on a fresh Debian machine, then run one job.
#
#   bash scripts/run.sh demo     install, then run the CPU demo
#   bash scripts/run.sh test     install, then run the whole test suite
#
# System packages come from apt (installed only when missing). The Python environment is a venv
# cached under $GUIAGENT_CACHE (default ~/.cache/guiagent), keyed by a hash of the dependency list,
# so a second run reuses it; a machine without the cache builds it from scratch. The repository's
# .venv is a link to it.
set -euo pipefail

job="${1:-}"
shift || true
case "$job" in
  demo|test|setup) ;;
  *) echo "usage: bash scripts/run.sh demo|test|setup [args...]" >&2; exit 2 ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${GUIAGENT_CACHE:-$HOME/.cache/guiagent}"
python="${PYTHON:-python3}"

# --- system packages -----------------------------------------------------------------------------------
apt_packages=(adb redis-server iproute2 chromium chromium-driver)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "[setup] installing system packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- python environment ----------------------------------------------------------------------------------
key=$(cat pyproject.toml scripts/run.sh | sha256sum | cut -c1-16)
venv="$cache/venv-$key"
if [ ! -f "$venv/.complete" ]; then
  echo "[setup] building Python environment in $venv (first run takes a few minutes)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip setuptools wheel
  # torch first and pinned: these builds run on the CPU here and a looser spec would pull a newer
  # multi-GB CUDA build. aarch64 gets the CPU build that matches its torchvision.
  if [ "$(uname -m)" = "aarch64" ]; then
    "$venv/bin/pip" install -q torch==2.9.1 torchvision==0.24.1
  else
    "$venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
  fi
  # DS_BUILD_OPS=0: DeepSpeed compiles the ops it needs on first use (cached in TORCH_EXTENSIONS_DIR).
  DS_BUILD_OPS=0 "$venv/bin/pip" install -q -e ".[android,web,osworld,dev]"
  touch "$venv/.complete"
fi
# Point the cached venv at this checkout (cheap; the cache may have been built from another clone).
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1
ln -sfn "$venv" .venv
export PATH="$venv/bin:$PATH"
# Idle OpenMP threads sleep instead of spinning: the main job and the tests run several torch processes
# (trainer, vLLM, workers) on a few cores, where spinning threads slowed every pass many times over.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

case "$job" in
  setup) echo "[setup] done: $venv" ;;
  demo)
    # The policy server's own environment (vLLM's CPU build; built once, cached): part of installing.
    "$venv/bin/python" -c "from guiagent.policy.serve import vllm_cpu_python; print('[setup] vLLM CPU:', vllm_cpu_python())"
    exec "$venv/bin/python" -m guiagent.demo "$@"
    ;;
  test)
    rc=0
    "$venv/bin/python" -m pytest tests "$@" || rc=$?
    # pytest's 5 means "no tests collected": that is a failure of this command, not a pass.
    exit "$rc"
    ;;
esac
