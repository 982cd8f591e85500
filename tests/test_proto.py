"""The generated code in edge/v1 must be exactly what the proto produces today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

GENERATED = ["router_pb2.py", "router_pb2.pyi", "router_pb2_grpc.py"]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iprotos", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", "protos/edge/v1/router.proto"],
        cwd=ROOT, check=True)
    for name in GENERATED:
        fresh = (tmp_path / "edge" / "v1" / name).read_text()
        committed = (ROOT / "edge" / "v1" / name).read_text()
        assert committed == fresh, f"edge/v1/{name} is stale: run scripts/gen_proto.sh"


def test_proto_package_and_service() -> None:
    from edge.v1 import router_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["EdgeRouter"]
    assert service.full_name == "edge.v1.EdgeRouter"
    assert {m.name for m in service.methods} == {"Generate", "GenerateStream", "ListModels", "GetStatus"}
    assert service.methods_by_name["GenerateStream"].server_streaming
