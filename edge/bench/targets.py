"""Which local models the bench measures: the configured ones and every verified installed GGUF."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.catalog import default_models_dir, list_installed, load_manifest, verify_file
from edge.config import Settings
from edge.errors import EdgeError

__all__ = ["ModelTarget", "resolve_targets"]


@dataclass(frozen=True)
class ModelTarget:
    """One GGUF to measure; `default` marks the model the daemon answers with."""

    name: str
    path: Path
    sha256: str
    size: int
    default: bool
    chat_format: str = ""


def _configured(settings: Settings, models_dir: Path) -> list[tuple[str, Path, str, str]]:
    """(name, path, sha256, chat_format) of each llama model in [[local.models]]."""
    manifest = load_manifest()
    out = []
    for e in settings.local.models:
        if e.backend != "llama":
            continue
        if e.path:
            out.append((e.name, Path(e.path).expanduser(), e.sha256, e.chat_format))
        else:
            spec = manifest.get(e.name)
            out.append((e.name, models_dir / spec.file, spec.sha256, e.chat_format))
    return out


def resolve_targets(settings: Settings, only: str = "") -> tuple[list[ModelTarget], list[str]]:
    """(the models to measure, default first; problems found on the way, one line each).

    The configured models come first, then every other verified GGUF installed in the
    models directory. A file that fails its check is a problem, not a target: the bench
    measures what the daemon would serve. `only` keeps the one model of that name."""
    models_dir = default_models_dir(settings.local.models_dir)
    manifest = load_manifest()
    default = settings.local.default_model or manifest.default
    problems: list[str] = []
    found: list[ModelTarget] = []
    candidates = _configured(settings, models_dir)
    candidates += [(m.name, m.path, m.sha256, "") for m in list_installed(models_dir)
                   if m.format == "gguf" and m.verified]
    seen: set[Path] = set()
    for name, path, sha256, chat_format in candidates:
        if path.resolve() in seen or (only and name != only):
            continue
        try:
            verify_file(path, sha256, name=name, models_dir=models_dir if path.parent == models_dir else None)
        except EdgeError as exc:
            problems.append(f"{name}: {exc}")
            continue
        seen.add(path.resolve())
        found.append(ModelTarget(name, path, sha256, path.stat().st_size, name == default, chat_format))
    if found and not any(t.default for t in found):
        found[0] = ModelTarget(**{**found[0].__dict__, "default": True})
    found.sort(key=lambda t: not t.default)
    if not found and not problems:
        problems.append(f"no local model installed in {models_dir} (run `edge models pull`)"
                        if not only else f"no model named {only!r} installed or configured")
    return found, problems
