"""`transfer evaluate --report DIR`: an HTML gallery of every evaluated image (dark input, output, target, PSNR and
SSIM), sortable by name or score (worst PSNR first by default). DIR/index.html refers to its images by relative
paths (DIR/images/), so the folder can be moved or served as is; no network, no external script."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from lowsim.imageio import write_png
from lowsim.safe_io import atomic_write_text

THUMB_SIDE = 320  # longest side of a gallery image, pixels
IMAGES_DIR = "images"
INDEX = "index.html"

_STYLE = """
body{font-family:sans-serif;margin:20px;color:#222}table{border-collapse:collapse}
th,td{border-bottom:1px solid #ddd;padding:6px 10px;text-align:right;vertical-align:middle}
th{background:#eee;cursor:pointer;user-select:none;text-align:center}th.sorted-asc::after{content:" \\25B2"}
th.sorted-desc::after{content:" \\25BC"}td.name{text-align:left;font-family:monospace}
img{display:block;max-width:320px;height:auto;image-rendering:pixelated}
"""

# Click a header to sort by it; a second click reverses. Numbers sort numerically (data-value on each cell).
_SCRIPT = """
function sortBy(th){
  const table=th.closest('table'), body=table.tBodies[0], col=th.cellIndex;
  const asc=!th.classList.contains('sorted-asc');
  table.querySelectorAll('th').forEach(h=>h.classList.remove('sorted-asc','sorted-desc'));
  th.classList.add(asc?'sorted-asc':'sorted-desc');
  const key=r=>{const c=r.cells[col];const v=c.dataset.value;return v===undefined?c.textContent:parseFloat(v);};
  const rows=Array.from(body.rows).sort((a,b)=>{const x=key(a),y=key(b);return (x<y?-1:x>y?1:0)*(asc?1:-1);});
  rows.forEach(r=>body.appendChild(r));
}
"""


def to_thumbnail(image: np.ndarray) -> np.ndarray:
    """float (H, W, C) in [0, 1] -> 8-bit RGB at most THUMB_SIDE on a side; packed raw (4 channels) as gray."""
    import cv2

    if image.shape[-1] == 4:
        image = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)
    scale = THUMB_SIDE / max(image.shape[:2])
    if scale < 1:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


class Gallery:
    """Collects one row per image while evaluating, then writes DIR/index.html."""

    def __init__(self, folder: str | Path, title: str) -> None:
        self.folder, self.title = Path(folder), title
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, dark: np.ndarray, output: np.ndarray, target: np.ndarray, scores: dict) -> None:
        """Write this image's three thumbnails and remember its scores."""
        stem = f"{len(self.rows):05d}"
        files = {}
        for kind, image in (("dark", dark), ("output", output), ("target", target)):
            files[kind] = f"{IMAGES_DIR}/{stem}-{kind}.png"
            write_png(self.folder / files[kind], to_thumbnail(image))
        self.rows.append({"name": name, "files": files, "psnr": float(scores["psnr"]),
                          "ssim": float(scores["ssim"])})

    def write(self, summary: str) -> Path:
        """The page, worst PSNR first."""
        rows = sorted(self.rows, key=lambda r: (r["psnr"], r["name"]))
        body = "\n".join(_row_html(r) for r in rows)
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
                f"<h1>{html.escape(self.title)}</h1><p>{html.escape(summary)}</p>"
                "<p>Click a column header to sort; rows start worst PSNR first.</p>"
                "<table id='gallery'><thead><tr><th onclick='sortBy(this)'>image</th><th>dark input</th>"
                "<th>output</th><th>target</th><th onclick='sortBy(this)' class='sorted-asc'>PSNR (dB)</th>"
                f"<th onclick='sortBy(this)'>SSIM</th></tr></thead><tbody>\n{body}\n</tbody></table>"
                "</body></html>\n")
        path = self.folder / INDEX
        atomic_write_text(path, page)
        return path


def _row_html(row: dict[str, Any]) -> str:
    cells = [f"<td class='name'>{html.escape(row['name'])}</td>"]
    for kind in ("dark", "output", "target"):
        cells.append(f"<td><img src='{html.escape(row['files'][kind])}' alt='{kind} {html.escape(row['name'])}'>"
                     "</td>")
    psnr = row["psnr"]
    shown = "inf" if math.isinf(psnr) else f"{psnr:.2f}"
    cells.append(f"<td data-value='{psnr if math.isfinite(psnr) else 1e9}'>{shown}</td>")
    cells.append(f"<td data-value='{row['ssim']}'>{row['ssim']:.4f}</td>")
    return "<tr>" + "".join(cells) + "</tr>"
