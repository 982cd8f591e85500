#!/usr/bin/env bash
# Set up edge in ./.venv: build llama-cpp-python portably (once, cached), install
# edge, pull the default model and the router classifier's files. Safe to run
# again: each step skips work already done.
#
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --dev    plus test and code-generation tools
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EDGE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
LLAMA_VERSION="0.3.36"   # keep in step with pyproject.toml
WHEELS="${EDGE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge/wheels}"
# llama.cpp's default build tunes for the build machine (-march=native). On
# Xeons with AMX that build segfaults in the first decode; this set runs on any
# x86-64 CPU with AVX2 and is what we measure with. Override for other targets
# (e.g. CMAKE_ARGS="-DGGML_CUDA=on" on a Jetson or a CUDA box).
PORTABLE_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
if [ "$(uname -m)" != "x86_64" ]; then PORTABLE_FLAGS="-DGGML_NATIVE=OFF"; fi
export CMAKE_ARGS="${CMAKE_ARGS:-$PORTABLE_FLAGS}"

EXTRAS=""
[ "${1:-}" = "--dev" ] && EXTRAS="[dev]"

say() { printf '\n== %s\n' "$*" >&2; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then PYTHON=python3; fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

# Built once per machine and reused: compiling llama.cpp takes minutes.
# The flags are part of the cache key so a different build never masquerades as this one.
FLAGS_KEY="$(printf '%s' "$CMAKE_ARGS" | sha256sum | cut -c1-12)"
WHEEL_DIR="$WHEELS/llama-cpp-python-$LLAMA_VERSION-$FLAGS_KEY"
if ! ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  say "building llama-cpp-python $LLAMA_VERSION with CMAKE_ARGS=\"$CMAKE_ARGS\" (once; a few minutes)"
  mkdir -p "$WHEEL_DIR"
  "${PIP[@]}" wheel --no-deps --no-cache-dir -w "$WHEEL_DIR" "llama-cpp-python==$LLAMA_VERSION"
fi
say "installing llama-cpp-python from $WHEEL_DIR"
"${PIP[@]}" install -q --no-deps --no-index --find-links "$WHEEL_DIR" "llama-cpp-python==$LLAMA_VERSION"

say "installing edge$EXTRAS"
"${PIP[@]}" install -q -e "$ROOT$EXTRAS"

say "pulling the default model"
"$VENV/bin/edge" models pull
say "pulling the router's difficulty-classifier encoder (and deriving its dynamically quantized copy) and tokenizer"
"$VENV/bin/edge" models pull minilm-l6-v2-int8
"$VENV/bin/edge" models pull minilm-l6-v2-tokenizer

if [ -n "$EXTRAS" ]; then
  if command -v npm >/dev/null 2>&1; then
    if [ ! "$ROOT/clients/node/node_modules/.package-lock.json" -nt "$ROOT/clients/node/package-lock.json" ]; then
      say "installing the Node.js example client's packages (npm ci in clients/node)"
      npm ci --no-audit --no-fund --loglevel=error --prefix "$ROOT/clients/node" >/dev/null
    fi
  elif command -v node >/dev/null 2>&1; then
    say "node is installed but npm is not: tests/test_node_client.py will fail until npm is installed"
  else
    say "Node.js not found: tests/test_node_client.py (the Node.js client) will skip"
  fi
  # Headless Chromium renders `edge bench`'s HTML report in tests/test_bench.py. Best effort:
  # only as root with apt, and a failure never stops the set-up (the test then says it skipped).
  if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      say "installing chromium with apt-get for the bench report's rendering test (best effort)"
      # apt's unprivileged helper must be able to write its temporary files; /tmp may be 0700.
      APT_TMP="$(mktemp -d /var/tmp/edge-apt.XXXXXX)" && chmod 1777 "$APT_TMP"
      apt_get() { TMPDIR="$APT_TMP" DEBIAN_FRONTEND=noninteractive apt-get "$@" >/dev/null 2>&1; }
      if apt_get install -y -q --no-install-recommends chromium \
          || { apt_get update -q && apt_get install -y -q --no-install-recommends chromium; }; then
        say "chromium installed"
      else
        say "chromium could not be installed: tests/test_bench.py's rendering check will skip"
      fi
      rm -rf "$APT_TMP"
    else
      say "chromium not found (installing it needs root and apt-get): tests/test_bench.py's rendering check will skip"
    fi
  fi
fi
