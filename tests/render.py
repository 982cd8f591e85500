"""Render an HTML page in headless Chromium and look at the pixels: did the plots draw?

Chromium comes from Debian's `chromium` package (scripts/setup.sh --dev installs it when
it runs as root with apt); without it, or without Pillow to read the screenshot, the
tests that need it skip and say why."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edge.bench.svg import PALETTE

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The browser's path, or None when none is installed."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def chromium() -> str:
    """The browser's path; skips the test when none is installed."""
    path = find_chromium()
    if path:
        return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium; scripts/setup.sh --dev "
                "does it when run as root with apt), so the report's rendering cannot be checked")


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 4200) -> Path:
    """A full-width screenshot of `html` (a local file, no network) into `png`."""
    browser = chromium()
    profile = png.parent / "chromium-profile"
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--no-first-run", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png}", html.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and png.is_file(), f"chromium exited {r.returncode}:\n{r.stderr[-2000:]}"
    return png


def plot_pixels(png: Path) -> dict[str, int]:
    """How many pixels of the screenshot have each chart colour (exactly, as SVG fills
    them), and how many are not white: a blank or unstyled page has none of the colours."""
    image_mod = pytest.importorskip("PIL.Image", reason="Pillow is needed to read the screenshot")
    with image_mod.open(png) as img:
        rgb = img.convert("RGB")
        counts: dict[tuple[int, int, int], int] = {}
        for count, colour in rgb.getcolors(maxcolors=1 << 24) or []:
            counts[colour] = count
    wanted = {c: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in PALETTE}
    out = {c: counts.get(rgb_, 0) for c, rgb_ in wanted.items()}  # type: ignore[call-overload]
    out["non_white"] = sum(n for colour, n in counts.items() if colour != (255, 255, 255))
    return out
