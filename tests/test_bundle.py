"""Offline bundles (edge/bundle.py): integrity checks on a tiny synthetic bundle, and the
real thing end to end: `edge bundle create`, then a fresh virtual environment installed
from the bundle with no package index (and, where `unshare -n` works, no network at all),
serving a real answer from the real default model, then `edge bench --quick` from the installed
bundle, whose HTML report renders in headless Chromium."""

from __future__ import annotations

import hashlib
import struct
import json
import os
import shutil
import stat
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from edge import bundle, catalog
from edge.bundle import BundleError, create_bundle, install_bundle
from edge.catalog import Manifest, ModelSpec, Source, list_installed
from edge.cli import main
from edge.config import load_settings
from tests.conftest import DaemonProcess
from tests.render import find_chromium, plot_pixels, screenshot

# A GGUF with no metadata and no tensors (version 3, counts 0) and some padding: whole by
# its structure (edge.catalog checks it), not a model llama.cpp could load.
TINY = b"GGUF" + struct.pack("<IQQ", 3, 0, 0) + bytes(range(256)) * 16
TINY_SHA = hashlib.sha256(TINY).hexdigest()


# -- a tiny synthetic bundle: no pip, no network, no real model ---------------------------------

@pytest.fixture
def tiny_manifest(monkeypatch: pytest.MonkeyPatch) -> Manifest:
    manifest = Manifest(default="tiny", model=[ModelSpec(
        name="tiny", file="tiny.gguf", size=len(TINY), sha256=TINY_SHA, license="MIT",
        source=Source(kind="url", url="http://127.0.0.1:9/tiny.gguf"))])
    monkeypatch.setattr(catalog, "load_manifest", lambda path=None: manifest)
    return manifest


def _fake_wheel(path: Path, name: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}.dist-info/RECORD", "")
    return path


@pytest.fixture
def tiny_bundle(tmp_path: Path, tiny_manifest: Manifest, monkeypatch: pytest.MonkeyPatch) -> Path:
    """create_bundle with the pip steps stubbed: the llama wheel and edge's wheel are dummies."""
    source_models = tmp_path / "source-models"
    source_models.mkdir()
    (tmp_path / "tiny.gguf").write_bytes(TINY)
    catalog.install_from(tmp_path / "tiny.gguf", source_models, name="tiny")
    llama = _fake_wheel(tmp_path / "llama_cpp_python-0.0.0-py3-none-any.whl", "llama_cpp_python-0.0.0")
    edge_wheel = _fake_wheel(tmp_path / "edge-0.0.0-py3-none-any.whl", "edge-0.0.0")
    pip_calls: list[list[str]] = []
    monkeypatch.setattr(bundle, "find_llama_wheel", lambda cache=None: llama)
    monkeypatch.setattr(bundle, "_run_pip", lambda python, args, what: pip_calls.append(list(args)))
    dest = tmp_path / "bundle"
    result = create_bundle(dest, models_dir=source_models, include_models=["tiny"], edge_wheel=edge_wheel)
    assert result.models == ["tiny"]
    assert [c[0] for c in pip_calls] == ["download"] and "--only-binary" in pip_calls[0]
    return dest


def test_create_writes_checksums_consistent_with_the_files(tiny_bundle: Path) -> None:
    info = json.loads((tiny_bundle / "bundle.json").read_text())
    on_disk = sorted(p.relative_to(tiny_bundle).as_posix() for p in tiny_bundle.rglob("*")
                     if p.is_file() and p.name != "bundle.json")
    assert [f["path"] for f in info["files"]] == on_disk
    assert {"wheels/edge-0.0.0-py3-none-any.whl", "wheels/llama_cpp_python-0.0.0-py3-none-any.whl",
            "models/tiny.gguf", "models/SHA256SUMS", "edge.toml", "install.sh", "edge.service"} == set(on_disk)
    for f in info["files"]:
        data = (tiny_bundle / f["path"]).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (f["sha256"], f["size"]), f["path"]
    assert info["models"] == [{"name": "tiny", "file": "tiny.gguf", "sha256": TINY_SHA, "size": len(TINY),
                               "format": "gguf"}]
    assert info["python"] == ".".join(map(str, sys.version_info[:3])) and info["platform"] and info["created_at"]
    assert (tiny_bundle / "models" / "SHA256SUMS").read_text() == f"{TINY_SHA}  tiny.gguf\n"
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=tiny_bundle / "models", check=True,
                       capture_output=True)
    # The default config loads as it is (no environment overrides), and install.sh is valid sh.
    load_settings(tiny_bundle / "edge.toml", environ={})
    assert os.access(tiny_bundle / "install.sh", os.X_OK)
    subprocess.run(["sh", "-n", str(tiny_bundle / "install.sh")], check=True)


def test_create_refuses_a_non_empty_folder_and_a_model_that_is_not_installed(
        tmp_path: Path, tiny_manifest: Manifest, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(BundleError, match="not an empty folder"):
        create_bundle(tmp_path / "full", models_dir=tmp_path)
    monkeypatch.setattr(bundle, "find_llama_wheel", lambda cache=None: tmp_path / "x.whl")
    with pytest.raises(BundleError, match=r"cannot bundle tiny: .*does not exist"):
        create_bundle(tmp_path / "new", models_dir=tmp_path / "no-models", include_models=["tiny"])
    assert not (tmp_path / "new").exists()  # no half-made bundle left behind


def test_install_verifies_then_installs_models_and_config(tiny_bundle: Path, tmp_path: Path) -> None:
    models, config = tmp_path / "models", tmp_path / "etc" / "edge.toml"
    result = install_bundle(tiny_bundle, models_dir=models, config_dest=config)
    assert result.models == ["tiny"] and result.config == config
    [m] = list_installed(models)
    assert (m.name, m.sha256, m.verified) == ("tiny", TINY_SHA, True)
    assert config.read_text() == (tiny_bundle / "edge.toml").read_text()
    # Again: idempotent, and an operator's edited config is kept.
    config.write_text("# mine\n")
    again = install_bundle(tiny_bundle, models_dir=models, config_dest=config)
    assert again.config is None and config.read_text() == "# mine\n"


@pytest.mark.parametrize("victim", ["models/tiny.gguf", "wheels/edge-0.0.0-py3-none-any.whl", "edge.toml"])
def test_a_flipped_byte_is_refused_by_name_and_nothing_is_installed(tiny_bundle: Path, tmp_path: Path,
                                                                    victim: str, capsys: pytest.CaptureFixture) -> None:
    path = tiny_bundle / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    models = tmp_path / "models"
    with pytest.raises(BundleError, match=rf"{victim}: sha256 [0-9a-f]{{64}}, bundle.json says") as exc:
        install_bundle(tiny_bundle, models_dir=models, config_dest=tmp_path / "edge.toml")
    assert "nothing installed" in str(exc.value)
    assert not models.exists() and not (tmp_path / "edge.toml").exists()
    # The CLI says the same and exits 1.
    assert main(["bundle", "install", str(tiny_bundle), "--dir", str(models)]) == 1
    assert victim in capsys.readouterr().err


def test_missing_extra_and_escaping_files_are_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    (tiny_bundle / "models" / "SHA256SUMS").unlink()
    _fake_wheel(tiny_bundle / "wheels" / "evil-1.0-py3-none-any.whl", "evil-1.0")
    info = json.loads((tiny_bundle / "bundle.json").read_text())
    info["files"].append({"path": "../outside", "sha256": "0" * 64, "size": 1})
    (tiny_bundle / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError) as exc:
        install_bundle(tiny_bundle, models_dir=tmp_path / "models")
    msg = str(exc.value)
    assert "models/SHA256SUMS: missing" in msg
    assert "wheels/evil-1.0-py3-none-any.whl: not listed in bundle.json" in msg
    assert "../outside: not a path inside the bundle" in msg
    with pytest.raises(BundleError, match="not an edge bundle: no bundle.json"):
        install_bundle(tmp_path, models_dir=tmp_path / "models")


def test_install_sh_checks_the_bundle_before_it_makes_a_venv(tiny_bundle: Path, tmp_path: Path) -> None:
    path = tiny_bundle / "wheels" / "edge-0.0.0-py3-none-any.whl"
    path.write_bytes(path.read_bytes() + b"x")
    venv = tmp_path / "venv"
    r = subprocess.run(["sh", str(tiny_bundle / "install.sh"), str(venv)], check=False, capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable}, timeout=60)
    assert r.returncode != 0 and "wheels/edge-0.0.0-py3-none-any.whl (sha256 mismatch)" in r.stderr, r.stderr
    assert not venv.exists()


def test_llama_wheel_lookup_names_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_WHEEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BundleError, match=rf"no llama-cpp-python .* wheel in {tmp_path / 'cache'} .*setup.sh"):
        bundle.find_llama_wheel()
    # A wheel of the right version whose native libraries are not the installed ones is refused too.
    from importlib.metadata import version

    ver = version("llama-cpp-python")
    other = tmp_path / "cache" / f"llama-cpp-python-{ver}-000000000000"
    other.mkdir(parents=True)
    with zipfile.ZipFile(other / f"llama_cpp_python-{ver}-py3-none-linux_x86_64.whl", "w") as zf:
        zf.writestr(f"llama_cpp_python-{ver}.dist-info/RECORD", "llama_cpp/lib/libllama.so,sha256=AAAA,1\n")
    with pytest.raises(BundleError, match="is the build installed here"):
        bundle.find_llama_wheel()


# -- end to end: the real bundle, a fresh venv, no index, a real answer --------------------------

def _offline_prefix() -> list[str]:
    """`unshare -n` (a network namespace with nothing in it) where this machine allows it."""
    if shutil.which("unshare"):
        try:
            if subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True, timeout=10).returncode == 0:
                return ["unshare", "-n"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return []


def _offline_with_loopback() -> list[str]:
    """`unshare -n` with the namespace's loopback brought up (the bench talks to its own daemon
    on 127.0.0.1 and nothing else), where this machine allows it; [] otherwise."""
    if not _offline_prefix() or not shutil.which("ip"):
        return []
    prefix = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    try:
        ok = subprocess.run([*prefix, "true"], check=False, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return prefix if ok else []


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.mark.model
@pytest.mark.timeout(1200)
def test_bundle_installs_with_no_index_and_answers(tmp_path: Path, default_model_path: Path) -> None:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    # 1. On the connected machine: the real command. pip download needs the package index
    #    here (its own download cache makes repeats fast); the models come from the user's cache.
    dest = tmp_path / "bundle"
    keys = tmp_path / "keys"
    _run([sys.executable, "-m", "edge", "bundle", "keygen", str(keys)], dict(os.environ), tmp_path)
    _run([sys.executable, "-m", "edge", "bundle", "create", str(dest), "--sign-key", str(keys / "edge-bundle.key")],
         dict(os.environ), tmp_path, timeout=600)
    timings["create"] = time.monotonic() - t0
    info = json.loads((dest / "bundle.json").read_text())
    wheels = {p.name for p in (dest / "wheels").iterdir()}
    assert any(w.startswith("edge-") for w in wheels) and info["llama_cpp_python"]["wheel"] in wheels
    assert all(w.endswith(".whl") for w in wheels)
    assert not any(w.startswith(("pytest", "hypothesis", "grpcio_tools", "matplotlib")) for w in wheels)  # no dev extra

    # 2. On the "edge box": no pip config (this machine's find-links and extra indexes are off),
    #    no index, an index URL that refuses, and no network at all where unshare allows it.
    home, models, venv, config = tmp_path / "home", tmp_path / "models", tmp_path / "venv", tmp_path / "etc" / "edge.toml"
    home.mkdir()
    box = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "EDGE_", "VIRTUAL_ENV", "XDG_"))}
    box.update({"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local"),
                "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
                "PYTHON": sys.executable, "EDGE_MODELS_DIR": str(models)})
    t1 = time.monotonic()
    offline = _offline_prefix()
    # The trust chain README gives: the public key came out of band; system tools check the
    # signature and every file (install.sh included) before anything from the bundle runs.
    _run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(keys / "edge-bundle.pub"), "-rawin",
          "-in", "SHA256SUMS", "-sigfile", "SHA256SUMS.sig"], box, dest)
    _run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], box, dest)
    r = _run([*offline, "sh", str(dest / "install.sh"), str(venv), str(config)], box, tmp_path, timeout=600)
    timings["install"] = time.monotonic() - t1
    assert "Successfully installed" in r.stdout and "edge-" in r.stdout
    edge = str(venv / "bin" / "edge")
    # edge runs from the new venv's site-packages (the bundle's wheel), not from this source tree.
    where = _run([str(venv / "bin" / "python"), "-c", "import edge; print(edge.__file__)"], box, tmp_path).stdout
    assert Path(where.strip()).is_relative_to(venv), where

    # 3. The models are installed and verify; the config loads.
    listed = json.loads(_run([edge, "models", "list", "--json"], box, tmp_path).stdout)
    by_name = {m["name"]: m for m in listed}
    default = catalog.load_manifest().default
    assert by_name[default]["verified"] and by_name[default]["sha256"] == catalog.load_manifest().get(default).sha256
    assert {catalog.ROUTER_ENCODER, catalog.ROUTER_TOKENIZER} <= set(by_name)
    assert (models / "all-MiniLM-L6-v2-int8.dynq.onnx").is_file()  # re-derived at install
    _run([edge, "config", "check", str(config)], box, tmp_path)
    _run([edge, "bundle", "verify", str(dest), "--public-key", str(keys / "edge-bundle.pub")], box, tmp_path)

    # 4. Serve with the installed config and ask the real default model, all from the new venv.
    t2 = time.monotonic()
    addr, log_path = tmp_path / "addr.json", tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([edge, "serve", "--config", str(config), "--listen", "127.0.0.1:0",
                                 "--address-file", str(addr)], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                env={**box, "EDGE_LEDGER": str(tmp_path / "ledger.sqlite3")})
    try:
        deadline = time.monotonic() + 120
        while not addr.exists():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        daemon = DaemonProcess(proc, json.loads(addr.read_text()), log_path)
        daemon.wait_serving()
        r = _run([edge, "ask", "What is the capital of France?", "--target", daemon.target, "--max-tokens", "24",
                  "--temperature", "0", "--json"], box, tmp_path)
        answer = json.loads(r.stdout)
        assert answer["text"].strip() and answer["served_by"]["tier"] == "TIER_LOCAL"
        assert answer["served_by"]["model"] == default
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    timings["serve+ask"] = time.monotonic() - t2

    # 5. `edge bench --quick` from the installed bundle, with no network but its own loopback:
    #    it writes the JSON and the HTML report, and the HTML's plots render.
    t3 = time.monotonic()
    bench_dir, no_net = tmp_path / "bench", _offline_with_loopback()
    _run([*no_net, edge, "bench", "--quick", "--no-progress", "--out", str(bench_dir)], box, tmp_path, timeout=400)
    timings["bench --quick"] = time.monotonic() - t3
    [report_path] = bench_dir.glob("bench-*.json")
    report = json.loads(report_path.read_text())
    # Every section ran, unless the box was so busy that the budget ran out (which the report then says).
    assert all(s["status"] == "ok" or (s.get("over_budget") and not report["reliable"])
               for s in report["sections"].values()), report["sections"]
    assert report["summary"]["gen_tps"] > 0
    assert report["summary"]["daemon_tps"] > 0 or report["sections"]["daemon"].get("over_budget")
    assert report["fingerprint"]["edge_version"] and report["fingerprint"]["llama_system_info"]
    rendered = "skipped (no chromium)"
    if find_chromium():
        pixels = plot_pixels(screenshot(report_path.with_suffix(".html"), tmp_path / "bench.png"))
        assert pixels["#3b6fb6"] > 5000, pixels
        rendered = "plots visible"
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"\nbundle: {size / 1e6:.1f} MB, {len(wheels)} wheels; network namespace: {bool(offline)}; "
          f"bench in a network namespace: {bool(no_net)}, report {rendered}; "
          + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))



# -- signed bundles ---------------------------------------------------------------------------------

@pytest.fixture
def signed(tiny_bundle: Path, tmp_path: Path) -> tuple[Path, Path]:
    from edge.bundle_signing import keygen, sign

    bundle = tmp_path / "signed"
    shutil.copytree(tiny_bundle, bundle)
    key, pub = keygen(tmp_path / "keys")
    sign(bundle, key)
    return bundle, pub


def test_a_signed_bundle_verifies_with_its_key_and_with_openssl(signed: tuple[Path, Path], tmp_path: Path) -> None:
    from edge.bundle_signing import verify_signature

    bundle, pub = signed
    verify_signature(bundle, pub)
    subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin", "-in", "SHA256SUMS",
                    "-sigfile", "SHA256SUMS.sig"], check=True, cwd=bundle, capture_output=True)
    subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], check=True, cwd=bundle)
    assert "install.sh" in (bundle / "SHA256SUMS").read_text() and "bundle.json" in (bundle / "SHA256SUMS").read_text()
    assert stat.S_IMODE((tmp_path / "keys" / "edge-bundle.key").stat().st_mode) == 0o600


def test_a_tampered_wheel_with_a_regenerated_bundle_json_is_refused(signed: tuple[Path, Path], tmp_path: Path) -> None:
    from edge.bundle import _manifest_files, install_bundle
    from edge.bundle_signing import BundleSignatureError

    bundle, pub = signed
    wheel = next((bundle / "wheels").glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"tampered")
    info = json.loads((bundle / "bundle.json").read_text())
    info["files"] = _manifest_files(bundle)  # what an attacker would regenerate: bundle.json agrees again
    (bundle / "bundle.json").write_text(json.dumps(info))
    models = tmp_path / "models"
    with pytest.raises(BundleSignatureError, match=f"{wheel.name}: sha256 differs"):
        install_bundle(bundle, models_dir=models, public_key=pub)
    assert not models.exists()


def test_a_replaced_install_sh_or_another_key_is_refused(signed: tuple[Path, Path], tmp_path: Path) -> None:
    from edge.bundle_signing import BundleSignatureError, keygen, verify_signature

    bundle, pub = signed
    _, other = keygen(tmp_path / "other-keys")
    with pytest.raises(BundleSignatureError, match="does not verify"):
        verify_signature(bundle, other)
    (bundle / "install.sh").write_text("#!/bin/sh\necho pwned\n")
    with pytest.raises(BundleSignatureError, match="install.sh: sha256 differs"):
        verify_signature(bundle, pub)
    r = subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"], cwd=bundle, capture_output=True)
    assert r.returncode != 0  # the documented check catches it before install.sh runs


def test_install_sh_refuses_extra_files_under_models_as_edge_bundle_install_does(tiny_bundle: Path,
                                                                                 tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "models" / "extra.gguf").write_bytes(b"GGUF")
    r = subprocess.run(["sh", str(bundle / "install.sh"), str(tmp_path / "venv")], check=False, capture_output=True,
                       text=True, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode != 0 and "models/extra.gguf (not in bundle.json)" in r.stderr
    assert not (tmp_path / "venv").exists()
