"""The audit's self-contained HTML page: summary table and the duplicate groups as thumbnails.

This module is private; see :meth:`breastus.AuditReport.write_html`.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING

from breastus._errors import DataError
from breastus.data._io import load_image

if TYPE_CHECKING:
    from breastus.data._audit_report import AuditReport


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
.group{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start;margin:8px 0 14px;padding:8px;
border:1px solid #ddd;border-radius:6px}
.conflict{border-color:#c0392b;background:#fdf2f1}
figure{margin:0;text-align:center;font-size:11px;max-width:180px}
figure img{display:block;margin:0 auto 3px;background:#000}
.label{font-weight:bold}.exact{color:#c0392b}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
"""


def _thumbnail(root: Path, relative: str, size: int) -> str:
    path = Path(relative) if Path(relative).is_absolute() else root / relative
    try:
        image = load_image(path)
    except DataError:
        return ""
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plain(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def render_html(report: AuditReport, thumbnail_size: int) -> str:
    """The page of ``report``, thumbnails at most ``thumbnail_size`` pixels on their longest side."""
    e = html.escape
    by_path = {image.path: image for image in report.images}
    conflict_sets = {tuple(c["paths"]) for c in report.conflicts}

    def row(paths: list[str], conflict: bool) -> str:
        first = int(by_path[paths[0]].phash, 16)
        figures = []
        for p in paths:
            image = by_path[p]
            same = image.pixel_sha256 == by_path[paths[0]].pixel_sha256
            if p == paths[0]:
                distance = "reference"
            elif same:
                distance = "exact copy"
            else:
                distance = f"d={bin(int(image.phash, 16) ^ first).count('1')}"
            data = _thumbnail(report.root, p, thumbnail_size)
            figures.append(
                f'<figure><img alt="{e(p)}" src="data:image/png;base64,{data}">'
                f'<span class="label">{e(image.label)}</span><br>{e(p)}<br>{image.width}×{image.height} '
                f'{e(image.mode)} · <span class="{"exact" if same and p != paths[0] else ""}">{distance}</span></figure>'
            )
        return f'<div class="group{" conflict" if conflict else ""}">{"".join(figures)}</div>'

    stats = report.statistics()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>breastus audit</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>breastus audit of {e(str(report.root))}</h1>",
        "<table>",
        *(
            f"<tr><th>{e(k)}</th><td>{e(_plain(v))}</td></tr>"
            for k, v in [
                ("readable images", stats["n_images"]),
                ("classes", stats["class_counts"]),
                ("near-duplicate threshold (phash bits)", report.threshold),
                ("duplicate groups (2+ images)", len(report.groups)),
                ("images in duplicate groups", report.n_duplicated_images),
                ("label conflicts", len(report.conflicts)),
                ("exact pixel-copy sets", len(report.exact_duplicates)),
                ("unreadable files", len(report.unreadable)),
                ("images without masks", len(report.images_without_masks)),
                ("masks without images", len(report.masks_without_images)),
                ("masks of another size", len(report.mask_size_mismatches)),
                ("modes", stats["modes"]),
                ("width (min/median/max)", stats["width"]),
                ("height (min/median/max)", stats["height"]),
            ]
        ),
        "</table>",
        f"<h2>Label conflicts ({len(report.conflicts)})</h2>",
        "<p>Each row is one group of duplicates filed under more than one class.</p>",
        *(row(c["paths"], True) for c in report.conflicts),
        f"<h2>Other duplicate groups ({len(report.groups) - len(report.conflicts)})</h2>",
        "<p><i>d</i>: perceptual-hash distance to the first image of the row.</p>",
        *(row(g, False) for g in report.groups if tuple(g) not in conflict_sets),
    ]
    for title, items in (
        ("Unreadable files", [f"{u['path']}: {u['error']}" for u in report.unreadable]),
        ("Masks without images", report.masks_without_images),
        ("Masks of another size than their image", [str(m) for m in report.mask_size_mismatches]),
        ("Images without masks", report.images_without_masks),
    ):
        parts.append(f"<h2>{e(title)} ({len(items)})</h2>")
        if items:
            parts.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in items) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
