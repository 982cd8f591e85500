from __future__ import annotations

import subprocess
import sys
import types

import edge


def test_all_lists_every_public_name_and_nothing_missing() -> None:
    # Submodules and the import helpers are not API; every other public name must be listed.
    public = {n for n, v in vars(edge).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)} - {"annotations", "version",
                                                                                   "PackageNotFoundError"}
    assert public <= set(edge.__all__), f"public but not in __all__: {public - set(edge.__all__)}"
    for name in edge.__all__:
        assert hasattr(edge, name), name


def test_import_is_cheap_and_side_effect_free() -> None:
    # Importing edge must not load llama.cpp, onnxruntime or start anything.
    code = "import sys, edge; print(sorted(m for m in ('llama_cpp', 'onnxruntime', 'httpx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
