"""Offline bundles: everything an edge box with no network needs, in one folder.

`create_bundle` (on a connected machine of the same OS, CPU architecture and Python
version) writes:

    DIR/wheels/          every wheel `pip install --no-index` needs: edge's own, the
                         llama-cpp-python wheel that scripts/setup.sh built (the very
                         build installed here), and the other runtime dependencies,
                         binary only (the target needs no compiler)
    DIR/models/          the model files, byte for byte what the manifest lists, and
                         SHA256SUMS (`sha256sum -c` format)
    DIR/edge.toml        a commented default config
    DIR/install.sh       POSIX sh: verify, venv, pip --no-index, `edge bundle install`
    DIR/bundle.json      what made it (edge, Python, platform) and every file's sha256 and size

`install_bundle` (run by an edge already installed from those wheels) checks every
file against bundle.json before it uses any, installs the models through
`catalog.install_from` (which checks them against the manifest once more) and puts
the config in place when there is none.

The router's derived ("dynq") encoder is not shipped: it is re-derived at install from
the manifest-verified int8 encoder by the onnxruntime the bundle installs, exactly as
`edge models pull` does. Its receipt then names that onnxruntime, and the only files
taken on trust are ones whose sha256 the manifest pins.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edge import catalog
from edge.errors import EdgeError, ModelError
from edge.shipped import shipped_file

__all__ = [
    "DEFAULT_CONFIG",
    "BundleError",
    "BundleResult",
    "create_bundle",
    "default_bundle_models",
    "find_llama_wheel",
    "install_bundle",
    "verify_bundle",
]

FORMAT = 1
LLAMA_DIST = "llama-cpp-python"
Log = Callable[[str], None]


class BundleError(EdgeError):
    """A bundle cannot be made or installed; the message names the file and the reason."""


@dataclass(frozen=True)
class BundleResult:
    path: Path
    files: int
    size: int
    models: list[str]
    config: Path | None = None


# A config that loads as it is (tests/test_bundle.py checks it): the operator's starting point.
DEFAULT_CONFIG = """\
# edge configuration (from an offline bundle). Every option, its default and what it
# does: `edge config schema`. Check an edited copy with `edge config check FILE`.
# Most options can also be set from the environment (EDGE_LISTEN, EDGE_MODELS_DIR,
# EDGE_UNIX_SOCKET, EDGE_TOKENS_FILE, EDGE_OFFLINE, ...); the environment wins.

[server]
# gRPC on loopback only. To serve the network, listen on an address of this box and
# set security.tokens_file (and TLS) below.
listen = "127.0.0.1:50051"
# A unix socket as well (the systemd unit sets EDGE_UNIX_SOCKET=/run/edge/edge.sock).
# unix_socket = "/run/edge/edge.sock"
# Seconds in-flight requests get to finish after SIGTERM (keep it below the unit's TimeoutStopSec).
shutdown_grace_s = 10.0

[local]
# Empty = the manifest's default model, installed by `edge bundle install`.
default_model = ""
# Empty = $EDGE_MODELS_DIR, else the user cache dir.
models_dir = ""
# llama.cpp threads; 0 = physical cores.
n_threads = 0
# Requests that may wait for the local model; one more is refused with RESOURCE_EXHAUSTED.
queue_size = 8

[routing]
# No remote tier is configured, so every request is answered on this box. Set
# offline = true to make sure none is ever contacted, even once [[onprem]] or
# [[cloud]] entries are added.
offline = false
# Score request difficulty with the bundled MiniLM classifier.
classifier = true

[security]
# Bearer tokens, one per line as 'client-name token'; re-read on SIGHUP
# (`systemctl reload edge`). Empty = no authentication (fine on loopback only).
tokens_file = ""

[metrics]
# host:port of the Prometheus /metrics endpoint; empty = off.
listen = ""
"""


# -- helpers ---------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return catalog.sha256_file(path)


def _safe_relative(rel: str) -> bool:
    p = Path(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts


def default_bundle_models() -> list[str]:
    """The manifest's default model and the router classifier's encoder and tokenizer."""
    return [catalog.load_manifest().default, catalog.ROUTER_ENCODER, catalog.ROUTER_TOKENIZER]


def _source_root() -> Path | None:
    """The source tree this edge runs from (an editable install), if it is one."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "edge"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _run_pip(python: str, args: Sequence[str], what: str) -> None:
    cmd = [python, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if proc.returncode != 0:
        raise BundleError(f"{what} failed (pip exited {proc.returncode}): {' '.join(cmd)}")


# -- llama-cpp-python: the wheel scripts/setup.sh built -------------------------------------

def _wheel_cache_root() -> Path:
    """Where scripts/setup.sh keeps its builds: $EDGE_WHEEL_CACHE, else <XDG cache>/edge/wheels."""
    env = os.environ.get("EDGE_WHEEL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge" / "wheels"


def _native_record(files: list[tuple[str, str]]) -> dict[str, str]:
    return {path: digest for path, digest in files if path.endswith((".so", ".dylib", ".dll")) or ".so." in path}


def _installed_llama_record() -> dict[str, str]:
    try:
        dist = metadata.distribution(LLAMA_DIST)
    except metadata.PackageNotFoundError:
        raise BundleError(f"{LLAMA_DIST} is not installed here (run scripts/setup.sh)") from None
    return _native_record([(str(f), f.hash.value) for f in dist.files or () if f.hash is not None])


def _wheel_record(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next((n for n in zf.namelist() if n.endswith(".dist-info/RECORD")), None)
        if name is None:
            return {}
        rows = [line.split(",") for line in zf.read(name).decode("utf-8").splitlines() if line]
    return _native_record([(r[0], r[1].removeprefix("sha256=")) for r in rows if len(r) >= 2 and r[1]])


def find_llama_wheel(wheel_cache: Path | None = None) -> Path:
    """The cached llama-cpp-python wheel whose native libraries are the ones installed here.

    Looks in `wheel_cache` (or $EDGE_WHEEL_CACHE, else <cache>/edge/wheels), in its
    llama-cpp-python-<version>-<flags hash>/ folders as scripts/setup.sh makes them, or
    in the folder itself. Raises BundleError naming where it looked.
    """
    version = metadata.version(LLAMA_DIST)
    root = wheel_cache or _wheel_cache_root()
    pattern = f"llama_cpp_python-{version}-*.whl"
    candidates = sorted([*root.glob(f"llama-cpp-python-{version}-*/{pattern}"), *root.glob(pattern)])
    if not candidates:
        raise BundleError(
            f"no {LLAMA_DIST} {version} wheel in {root} (looked for {root}/llama-cpp-python-{version}-*/{pattern} "
            f"and {root}/{pattern}); scripts/setup.sh builds it there, or give --wheel-cache / $EDGE_WHEEL_CACHE")
    installed = _installed_llama_record()
    for wheel in candidates:
        if installed and _wheel_record(wheel) == installed:
            return wheel
    raise BundleError(
        f"none of the {LLAMA_DIST} {version} wheels in {root} is the build installed here "
        f"({', '.join(str(c) for c in candidates)}); rebuild with scripts/setup.sh or point --wheel-cache at the right one")


# -- create ------------------------------------------------------------------------------------

def _build_edge_wheel(python: str, out: Path, log: Log) -> Path:
    root = _source_root()
    if root is None:
        raise BundleError("this edge is not running from a source tree; give --edge-wheel PATH (edge's own wheel)")
    log(f"building edge's wheel from {root}")
    with tempfile.TemporaryDirectory(prefix="edge-wheel-") as tmp:
        _run_pip(python, ["wheel", "--no-deps", "-q", "-w", tmp, str(root)], "building edge's wheel")
        built = list(Path(tmp).glob("edge-*.whl"))
        if len(built) != 1:
            raise BundleError(f"expected one edge wheel from pip wheel, found {len(built)}")
        return Path(shutil.copy2(built[0], out / built[0].name))


def _add_models(names: Sequence[str], models_dir: Path, out: Path, log: Log) -> list[dict[str, Any]]:
    manifest = catalog.load_manifest()
    out.mkdir()
    entries: list[dict[str, Any]] = []
    for name in dict.fromkeys(names):
        try:
            spec = manifest.get(name)
        except ModelError as exc:
            raise BundleError(f"{exc}; a custom GGUF travels as a file: `edge models pull --from FILE --name NAME`") from None
        src = models_dir / spec.file
        try:
            catalog.verify_file(src, spec.sha256, name=spec.name, models_dir=models_dir, expected_size=spec.size,
                                fmt=spec.format)
        except ModelError as exc:
            raise BundleError(f"cannot bundle {spec.name}: {exc}") from None
        log(f"adding model {spec.name} ({spec.size / 1e6:.1f} MB)")
        dst = out / spec.file
        shutil.copyfile(src, dst)
        if _sha256(dst) != spec.sha256:  # changed in place without a new mtime, or a bad copy
            raise BundleError(f"cannot bundle {spec.name}: the copy of {src} does not hash to the manifest's sha256")
        entries.append({"name": spec.name, "file": spec.file, "sha256": spec.sha256, "size": spec.size,
                        "format": spec.format})
    (out / "SHA256SUMS").write_text("".join(f"{e['sha256']}  {e['file']}\n" for e in entries), encoding="utf-8")
    return entries


_INSTALL_SH = """\
#!/bin/sh
# Install edge from this bundle on a machine with no network.
#
#   ./install.sh [VENV [CONFIG]]
#
# VENV    the virtual environment to create or update (default /opt/edge)
# CONFIG  where to put the bundle's edge.toml unless a file is there already
#         (default: no config is written)
# Models go to $EDGE_MODELS_DIR (default: the user cache dir), e.g.
#   sudo EDGE_MODELS_DIR=/var/lib/edge/models ./install.sh /opt/edge /etc/edge/edge.toml
# $PYTHON picks the interpreter (default python3); it must be Python @PYVER@.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-/opt/edge}
config=${2:-}
python=${PYTHON:-python3}

have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$have" != "@PYVER@" ]; then
  echo "install.sh: this bundle is for Python @PYVER@ (@PLATFORM@); $python is $have" >&2
  exit 1
fi

# Check every file against bundle.json before anything from the bundle is installed or run.
"$python" - "$here" <<'EOF'
import hashlib, json, os, sys
root = sys.argv[1]
listed = json.load(open(os.path.join(root, "bundle.json")))["files"]
bad = []
for f in listed:
    h = hashlib.sha256()
    try:
        with open(os.path.join(root, f["path"]), "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        bad.append(f["path"] + " (missing)")
        continue
    if h.hexdigest() != f["sha256"]:
        bad.append(f["path"] + " (sha256 mismatch)")
known = {f["path"] for f in listed}
for folder in ("wheels", "models"):  # what edge bundle install refuses, refused here too
    for dirpath, _, names in os.walk(os.path.join(root, folder)):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), root).replace(os.sep, "/")
            if rel not in known:
                bad.append(rel + " (not in bundle.json)")
if bad:
    sys.exit("install.sh: the bundle is damaged, refusing to install: " + ", ".join(bad))
EOF

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# --force-reinstall: a venv that had an older install ends up with exactly the bundle's wheels.
"$venv/bin/python" -m pip install --disable-pip-version-check --no-index --find-links "$here/wheels" \
  --force-reinstall edge
if [ -n "$config" ]; then
  "$venv/bin/edge" bundle install "$here" --config-dest "$config"
else
  "$venv/bin/edge" bundle install "$here"
fi
"""


def _manifest_files(root: Path) -> list[dict[str, Any]]:
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "bundle.json"):
        files.append({"path": path.relative_to(root).as_posix(), "sha256": _sha256(path), "size": path.stat().st_size})
    return files


def create_bundle(dest: Path, *, models_dir: Path, include_models: Sequence[str] | None = None,
                  wheel_cache: Path | None = None, edge_wheel: Path | None = None, python: str = sys.executable,
                  sign_key: Path | None = None, log: Log = lambda _m: None) -> BundleResult:
    """Write an offline bundle to `dest` (a new or empty folder) for this platform and Python.

    Needs the package index (pip download) for the runtime dependencies; edge's wheel
    is built from the source tree unless `edge_wheel` is given; llama-cpp-python's is
    copied from the wheel cache (find_llama_wheel).
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BundleError(f"{dest} exists and is not an empty folder; bundles are written to a new one")
    names = list(include_models) if include_models else default_bundle_models()
    llama = find_llama_wheel(wheel_cache)  # fail early, before minutes of downloads
    existed = dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        result = _write_bundle(dest, names, llama, models_dir, edge_wheel, python, log)
        if sign_key is not None:
            from edge.bundle_signing import sign

            log(f"signing with {sign_key}")
            sign(dest, Path(sign_key))
        return result
    except BaseException:
        # Leave no half-made bundle behind (a rerun would find the folder not empty).
        for child in dest.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        if not existed:
            dest.rmdir()
        raise


def _write_bundle(dest: Path, names: Sequence[str], llama: Path, models_dir: Path, edge_wheel: Path | None, python: str,
          log: Log) -> BundleResult:
    wheels = dest / "wheels"
    wheels.mkdir()

    models = _add_models(names, models_dir, dest / "models", log)

    log(f"adding {llama.name} from {llama.parent}")
    shutil.copy2(llama, wheels / llama.name)
    if edge_wheel is not None:
        if not Path(edge_wheel).is_file():
            raise BundleError(f"--edge-wheel: {edge_wheel} is not a file")
        ours = Path(shutil.copy2(edge_wheel, wheels / Path(edge_wheel).name))
    else:
        ours = _build_edge_wheel(python, wheels, log)

    # pip resolves edge's runtime requirements (not the extras) against the index, with
    # the wheels folder as a source too: llama-cpp-python is found there (the index has
    # only its sdist, and --only-binary rules that out).
    log("downloading edge's runtime dependencies (binary wheels for this platform)")
    _run_pip(python, ["download", "-q", "--only-binary", ":all:", "--find-links", str(wheels), "-d", str(wheels),
                      str(ours)], "downloading the dependencies")
    llamas = sorted(wheels.glob("llama_cpp_python-*.whl"))
    if [w.name for w in llamas] != [llama.name] or _sha256(wheels / llama.name) != _sha256(llama):
        raise BundleError(f"pip chose another {LLAMA_DIST} build than {llama} ({', '.join(w.name for w in llamas)})")

    config = dest / "edge.toml"
    config.write_text(DEFAULT_CONFIG, encoding="utf-8")
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    script = dest / "install.sh"
    script.write_text(_INSTALL_SH.replace("@PYVER@", pyver).replace("@PLATFORM@", sysconfig.get_platform()),
                      encoding="utf-8")
    script.chmod(0o755)
    unit = shipped_file("systemd/edge.service")
    if unit is not None:  # the service definition travels with the bundle (README: running as a service)
        shutil.copyfile(unit, dest / "edge.service")

    from edge import __version__

    files = _manifest_files(dest)
    info = {
        "format": FORMAT,
        "edge_version": __version__,
        "python": platform.python_version(),
        "python_tag": sys.implementation.cache_tag,
        "platform": sysconfig.get_platform(),
        "machine": platform.machine(),
        "libc": "-".join(platform.libc_ver()),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "llama_cpp_python": {"version": metadata.version(LLAMA_DIST), "wheel": llama.name, "built_in": llama.parent.name},
        "models": models,
        "files": files,
    }
    (dest / "bundle.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return BundleResult(dest, len(files) + 1, sum(int(f["size"]) for f in files), [str(m["name"]) for m in models])


# -- verify and install ---------------------------------------------------------------------------

def verify_bundle(src: Path) -> dict[str, Any]:
    """Check every file against bundle.json (size, sha256), and that wheels/ and models/
    hold nothing else. Returns bundle.json's contents; raises BundleError naming each bad file."""
    src = Path(src)
    try:
        info = json.loads((src / "bundle.json").read_text(encoding="utf-8"))
        listed = {str(f["path"]): f for f in info["files"]}
        for f in listed.values():
            int(f["size"]), str(f["sha256"])
    except FileNotFoundError:
        raise BundleError(f"{src} is not an edge bundle: no bundle.json") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{src / 'bundle.json'} is unreadable or malformed: {exc}") from None
    if info.get("format") != FORMAT:
        raise BundleError(f"{src / 'bundle.json'}: bundle format {info.get('format')!r}, this edge reads {FORMAT}")
    problems: list[str] = []
    for rel, f in sorted(listed.items()):
        if not _safe_relative(rel):
            problems.append(f"{rel}: not a path inside the bundle")
            continue
        path = src / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != int(f["size"]):
            problems.append(f"{rel}: {path.stat().st_size} bytes, bundle.json says {f['size']}")
        elif _sha256(path) != f["sha256"]:
            problems.append(f"{rel}: sha256 {_sha256(path)}, bundle.json says {f['sha256']}")
    for folder in ("wheels", "models"):
        for path in sorted((src / folder).rglob("*")) if (src / folder).is_dir() else ():
            rel = path.relative_to(src).as_posix()
            if path.is_file() and rel not in listed:
                problems.append(f"{rel}: not listed in bundle.json")
    if problems:
        raise BundleError(f"bundle {src} failed verification; nothing installed:\n  " + "\n  ".join(problems))
    return info


def install_bundle(src: Path, *, models_dir: Path, config_dest: Path | None = None,
                   public_key: Path | None = None, log: Log = lambda _m: None) -> BundleResult:
    """Verify the bundle (its signature first, with `public_key`), install its models into
    `models_dir` (each checked against the manifest again), derive the router's encoder,
    and copy edge.toml to `config_dest` unless a file is there. Installs no Python
    packages: install.sh (or pip) does that."""
    src = Path(src)
    if public_key is not None:
        from edge.bundle_signing import verify_signature

        verify_signature(src, Path(public_key))
        log(f"signature verified with {public_key}")
    info = verify_bundle(src)
    log(f"bundle verified: {len(info['files'])} files (edge {info.get('edge_version')}, "
        f"Python {info.get('python')}, {info.get('platform')})")
    manifest = catalog.load_manifest()
    installed: list[str] = []
    for entry in info.get("models", []):
        name, file_name = str(entry["name"]), str(entry["file"])
        spec = manifest.get(name)
        target = models_dir / spec.file
        try:
            catalog.verify_file(target, spec.sha256, name=name, models_dir=models_dir, expected_size=spec.size,
                                fmt=spec.format)
            log(f"{name} is already installed and verified: {target}")
        except ModelError:
            catalog.install_from(src / "models" / file_name, models_dir, name=name, log=log)
            log(f"installed {name}: {target}")
        installed.append(name)
        if name == catalog.ROUTER_ENCODER:
            try:
                derived = catalog.ensure_derived_encoder(target, source_sha256=spec.sha256, log=log)
                log(f"derived encoder: {derived}")
            except (EdgeError, ImportError, OSError) as exc:
                log(f"warning: {exc}; the classifier will use the pulled encoder")
    written: Path | None = None
    if config_dest is not None:
        config_dest = Path(config_dest)
        if config_dest.exists():
            log(f"kept the existing config {config_dest}")
        else:
            config_dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / "edge.toml", config_dest)
            written = config_dest
            log(f"wrote config {config_dest}")
    files = info["files"]
    return BundleResult(src, len(files) + 1, sum(int(f["size"]) for f in files), installed, written)
