"""`transfer evaluate --report DIR`: the HTML gallery, rendered in a real headless browser."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lowsim.imageio import read_image
from test_transfer_fixtures import make_lol
from transfer.checkpoint import save_checkpoint
from transfer.cli import main as transfer_main
from transfer.models import create_model

CHROMIUM = Path("/usr/bin/chromium")
# Appended to a copy of the page: once everything has loaded, count the images that decoded, sort by SSIM
# (a click on its header) and leave the result in an attribute that --dump-dom shows.
CHECK = """<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  const before = Array.from(document.querySelectorAll('#gallery tbody tr')).map(r => r.cells[4].dataset.value);
  document.querySelectorAll('#gallery th')[5].click();
  const ssim = Array.from(document.querySelectorAll('#gallery tbody tr')).map(r => r.cells[5].dataset.value);
  document.body.setAttribute('data-check', JSON.stringify({images: images.length, loaded, before, ssim}));
});
</script>"""


def chromium_or_skip() -> None:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found; scripts/setup.sh installs it with apt-get"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def chromium(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with a throwaway profile (the flags of tests/test_compare.py)."""
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--no-first-run", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=90, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    pairs = make_lol(root / "lol", n=5)
    torch.manual_seed(0)
    model = create_model("sid_unet", width=4, input_kind="srgb")
    save_checkpoint(root / "run" / "best", model, {"model": "sid_unet", "model_config": model.config,
                                                   "input_kind": "srgb"})
    with pytest.raises(SystemExit) as stop:
        transfer_main(["evaluate", "--checkpoint", str(root / "run"), "--pairs", str(pairs), "--report",
                       str(root / "gallery"), "--quiet"])
    assert stop.value.code in (0, None)
    return root / "gallery"


def test_gallery_rows_refer_to_their_images_by_relative_paths(report: Path) -> None:
    page = (report / "index.html").read_text()
    sources = re.findall(r"<img src='([^']+)'", page)
    assert len(sources) == 15 and all(not s.startswith(("/", "file:", "http")) for s in sources)
    assert all((report / s).is_file() for s in sources)
    assert read_image(report / sources[0]).dtype == np.uint8
    scores = [float(v) for v in re.findall(r"<td data-value='([^']+)'>[^<]*</td><td data-value", page)]
    assert len(scores) == 5 and scores == sorted(scores)  # worst PSNR first


def test_gallery_renders_every_image_and_sorts_in_chromium(report: Path, tmp_path: Path) -> None:
    chromium_or_skip()
    check = report / "check.html"
    check.write_text((report / "index.html").read_text().replace("</body>", CHECK + "</body>"))
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", check.resolve().as_uri()).stdout
    found = re.search(r"data-check=\"([^\"]+)\"", dom)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["images"] == 15 and result["loaded"] == 15
    assert [float(v) for v in result["before"]] == sorted(float(v) for v in result["before"])
    assert [float(v) for v in result["ssim"]] == sorted(float(v) for v in result["ssim"])
    shot = tmp_path / "gallery.png"
    chromium("--window-size=1200,1400", f"--screenshot={shot}", (report / "index.html").resolve().as_uri())
    pixels = read_image(shot).astype(np.float64)
    assert pixels.std() > 20 and (pixels.mean(axis=2) < 128).mean() > 0.01  # text and images, not blank
