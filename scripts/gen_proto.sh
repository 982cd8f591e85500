#!/usr/bin/env bash
# Regenerate edge/v1/*_pb2*.py from protos/. tests/test_proto.py fails when they are stale.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT}"
cd "$ROOT"
"${PYTHON:-python}" -m grpc_tools.protoc -Iprotos --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
  protos/edge/v1/router.proto
