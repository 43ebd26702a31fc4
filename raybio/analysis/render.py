"""Screenshots of a rendered report with headless Chromium (Debian package `chromium`), for review."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def screenshot(html: str | Path, png: str | Path, width: int = 1280, height: int = 4000) -> Path:
    """Render `html` (a local file) as a reader's browser would and save a `width`×`height` PNG."""
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        raise FileNotFoundError("no Chromium found: install it (Debian: apt-get install -y chromium)")
    png = Path(png).resolve()
    with tempfile.TemporaryDirectory(prefix="raybio-chromium-") as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={width},{height}",
                Path(html).resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return png


if __name__ == "__main__":  # python -m raybio.analysis.render report.html out.png [height]
    print(screenshot(sys.argv[1], sys.argv[2], height=int(sys.argv[3]) if len(sys.argv) > 3 else 4000))
