"""Helpers for the browser tests that read what Chromium really drew (not only what Plotly was given)."""

from __future__ import annotations

from typing import Any


def visible_row_marks(page: Any, index: int = 0) -> dict[str, float]:
    """Share of each schedule row's width that is drawn (not background), read from a screenshot.

    ``_fullData`` says what Plotly was given, not what it drew (a reversed axis once left WebGL traces
    undrawn while the data was all there), so this samples pixels: for every y tick of the index-th visible
    chart, a 3-pixel band through the row's centre across the plot area; a pixel counts when it differs
    clearly from the white background.
    """
    import io

    from PIL import Image

    geo = page.evaluate(
        """(i) => {
            const plots = [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.offsetParent !== null);
            const gd = plots[i];
            const ya = gd._fullLayout.yaxis, xa = gd._fullLayout.xaxis;
            const rows = ya.tickvals.map((v, k) => [ya.ticktext[k], ya._offset + ya.l2p(v)]);
            return {rows, x0: xa._offset, x1: xa._offset + xa._length};
        }""",
        index,
    )
    plots = page.locator(".js-plotly-plot").filter(has=page.locator(".main-svg"))
    visible = [plots.nth(k) for k in range(plots.count()) if plots.nth(k).is_visible()]
    img = Image.open(io.BytesIO(visible[index].screenshot())).convert("RGB")
    scale = img.width / max(1.0, float(visible[index].bounding_box()["width"]))
    out: dict[str, float] = {}
    x0, x1 = int(geo["x0"] * scale) + 2, int(geo["x1"] * scale) - 2
    for name, y in geo["rows"]:
        drawn = total = 0
        for dy in (-1, 0, 1):
            yy = int(y * scale) + dy
            for x in range(x0, x1):
                r, g, b = img.getpixel((x, yy))
                total += 1
                drawn += (255 - min(r, g, b)) > 40
        out[name] = drawn / max(1, total)
    return out
