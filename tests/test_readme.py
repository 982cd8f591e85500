"""README's config examples are real configs: each one loads without error."""

from __future__ import annotations

import re

import pytest

from edge.config import load_settings

from .conftest import ROOT

BLOCKS = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_config_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"example{i}" for i in range(len(BLOCKS))])
def test_readme_config_example_is_valid(block: str, tmp_path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(block)
    load_settings(path, environ={})  # raises ConfigError naming the key if README drifted from the schema
