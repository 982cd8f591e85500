"""Files that ship with edge but live elsewhere in the repository: models/ (manifest,
price table, the router's trained head) and deploy/ (the systemd unit).

An installed wheel carries them under edge/_data (pyproject's force-include); a
source checkout (editable install) reads them from the repository root.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["shipped_file"]

_PACKAGE = Path(__file__).resolve().parent


def shipped_file(relative: str) -> Path | None:
    """The path of `relative` (e.g. "router/difficulty_head.onnx"), or None when neither copy exists."""
    for candidate in (_PACKAGE / "_data" / relative, _PACKAGE.parent / "models" / relative,
                      _PACKAGE.parent / "deploy" / relative):
        if candidate.is_file():
            return candidate
    return None
