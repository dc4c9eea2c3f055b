"""Images for the HTML report: PNG bytes as data URIs, per-class rows cut out of sample grids,
and training curves drawn with matplotlib (object API, no pyplot global state)."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

MAX_WIDTH = 1024  # wider images are downscaled before embedding


def data_uri(png: bytes, mime: str = "image/png") -> str:
    """``data:`` URI of an image (so the page needs no other file)."""
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def png_bytes(img: Image.Image | np.ndarray, max_width: int = MAX_WIDTH, min_height: int = 0) -> bytes:
    """Encode an image as PNG, downscaling it (keeping the aspect ratio) to at most ``max_width``.

    Images lower than ``min_height`` are enlarged by an integer factor (nearest neighbour, so
    pixels stay sharp) as long as they stay within ``max_width``.
    """
    im = Image.fromarray(img) if isinstance(img, np.ndarray) else img
    if min_height and im.height < min_height:
        k = min(-(-min_height // im.height), max(1, max_width // im.width))
        if k > 1:
            im = im.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)
    if im.width > max_width:
        im = im.resize((max_width, max(1, round(im.height * max_width / im.width))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def file_uri(path: Path, min_height: int = 0) -> str:
    """A data URI of an image file, re-encoded as PNG (downscaled when very wide, see :func:`png_bytes`)."""
    with Image.open(path) as im:
        im.load()
        return data_uri(png_bytes(im.convert("L") if im.mode in ("I", "I;16", "F") else im, min_height=min_height))


def _grid_padding(a: np.ndarray, rows: int, max_pad: int = 8) -> int:
    """Padding of a grid with ``rows`` rows of equal cells (torchvision ``make_grid`` layout).

    The largest ``p`` such that the rows are an integer height and every separator band of height
    ``p`` is one uniform colour; 0 when no padding fits.
    """
    h = a.shape[0]
    for p in range(max_pad, 0, -1):
        cell, rem = divmod(h - (rows + 1) * p, rows)
        if rem or cell <= 0:
            continue
        bands = [a[i * (cell + p): i * (cell + p) + p] for i in range(rows + 1)]
        if all(b.size and (b == b.reshape(-1, *b.shape[2:])[0]).all() for b in bands):
            return p
    return 0


def grid_rows(path: Path, rows: int) -> list[np.ndarray]:
    """Cut a sample grid (one row of images per class) into its ``rows`` horizontal strips."""
    with Image.open(path) as im:
        a = np.asarray(im.convert("L") if im.mode not in ("L", "RGB") else im)
    if rows <= 1:
        return [a]
    p = _grid_padding(a, rows)
    cell = (a.shape[0] - (rows + 1) * p) // rows
    return [a[p + i * (cell + p): p + i * (cell + p) + cell] for i in range(rows)]


def pick_evenly(items: Sequence, k: int) -> list:
    """At most ``k`` items spread evenly over ``items``, always keeping the first and the last."""
    n = len(items)
    if n <= k:
        return list(items)
    idx = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [n - 1]
    return [items[i] for i in idx]


def line_plot(series: dict[str, list[tuple[float, float]]], title: str, ylabel: str, logy: bool = False,
              hlines: dict[str, float] | None = None) -> bytes:
    """PNG of one or more (step, value) series on shared axes, with dashed horizontal reference lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.2), dpi=96)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, pts in series.items():
        x, y = zip(*pts)
        ax.plot(x, y, label=name, marker="o" if len(pts) < 30 else None, markersize=3, linewidth=1.2)
    for name, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", linewidth=1, color="gray", label=name)
    values = [v for pts in series.values() for _, v in pts] + list((hlines or {}).values())
    if logy and all(v > 0 for v in values):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
