"""Loss curves as a PNG, drawn with Pillow (no plotting dependency)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from infoedit.hub import atomic_write_bytes

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def plot_curves(series: dict[str, list[tuple[float, float]]], path: Path, title: str = "losses",
                x_name: str = "step") -> None:
    """One panel per series (x = step, or what ``x_name`` names), stacked vertically, each with its own y range."""
    names = [n for n, pts in series.items() if pts]
    w, panel, margin = 640, 110, 48
    img = Image.new("RGB", (w, 24 + panel * max(1, len(names))), "white")
    draw = ImageDraw.Draw(img)
    draw.text((margin, 6), title, fill="black")
    for i, name in enumerate(names):
        pts = series[name]
        top = 24 + i * panel
        x0, x1, y0, y1 = margin, w - 12, top + 8, top + panel - 20
        draw.rectangle((x0, y0, x1, y1), outline="#999999")
        steps = [p[0] for p in pts]
        vals = [p[1] for p in pts]
        lo, hi = min(vals), max(vals)
        hi = hi if hi > lo else lo + 1e-9
        smin, smax = min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1
        xy = [(x0 + (s - smin) / (smax - smin) * (x1 - x0), y1 - (v - lo) / (hi - lo) * (y1 - y0))
              for s, v in zip(steps, vals)]
        if len(xy) > 1:
            draw.line(xy, fill=COLORS[i % len(COLORS)], width=2)
        draw.text((x0 + 4, y0 + 2), f"{name}  last {vals[-1]:.4g}", fill=COLORS[i % len(COLORS)])
        draw.text((2, y0), f"{hi:.3g}", fill="black")
        draw.text((2, y1 - 10), f"{lo:.3g}", fill="black")
        draw.text((x1 - 60, y1 + 4), f"{x_name} {smax:g}", fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
