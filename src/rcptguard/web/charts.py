"""Charts drawn on the server as inline SVG: no script, no request to anywhere, readable by a screen reader.

    stacked_columns(days, series, title="Holds a day, by outcome")    # one column a day, one band a series
    bars([("gmial.com", 12), ...], title="Most held domains")          # one horizontal bar a row

Each chart is an `<svg role="img">` with a `<title>` and a `<desc>` that says its numbers in words, and scales to
the width of its container (a viewBox, no fixed size). Every text goes through Markup.format, which escapes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup

__all__ = ["COLOURS", "bars", "stacked_columns"]

# One colour per outcome, told apart without colour too: the legend and the description name each.
COLOURS = {"held": "#6b6b6b", "released": "#0b3d91", "corrected": "#1b7f3b", "cancelled": "#a00000",
           "expired": "#b35c00"}
OTHER = "#444444"
_WIDTH = 640  # of a column chart; a bar chart is narrower, so that its words stay readable on a phone
_BARS_WIDTH = 420
_TEXT = Markup('<text x="{:.1f}" y="{:.1f}" font-family="system-ui, sans-serif" font-size="{}">{}</text>')
_RECT = Markup('<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}">{}</rect>')
_TIP = Markup("<title>{}</title>")


def _svg(width: int, height: float, title: str, desc: str, parts: list[Markup]) -> Markup:
    return Markup('<svg viewBox="0 0 {} {:.0f}" width="100%" role="img" class="chart" '
                  'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
                  "<title>{}</title><desc>{}</desc>{}</svg>").format(width, height, title, desc,
                                                                      Markup("").join(parts))


def stacked_columns(labels: Sequence[str], series: Mapping[str, Sequence[int]], *, title: str,
                    colours: dict[str, str] = COLOURS) -> Markup:
    """One column per label (a day), split into the series' bands (outcomes), with a legend."""
    plot_top, plot_height, left, size = 30.0, 170.0, 36.0, 14
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = max([*totals, 1])
    step = (_WIDTH - left - 8) / max(len(labels), 1)
    parts = []
    for x, name in enumerate(series):
        parts.append(_RECT.format(left + x * 110, 6, 12, 12, colours.get(name, OTHER), ""))
        parts.append(_TEXT.format(left + x * 110 + 16, 17, size, name))
    base = plot_top + plot_height
    for i, label in enumerate(labels):
        y = base
        for name, values in series.items():
            height = values[i] / top * plot_height
            if height:
                y -= height
                parts.append(_RECT.format(left + i * step + 1, y, max(step - 2, 1), height,
                                          colours.get(name, OTHER), _TIP.format(f"{label}: {values[i]} {name}")))
        if i % max(len(labels) // 6, 1) == 0:
            parts.append(_TEXT.format(left + i * step, base + 16, size, label))
    parts += [_TEXT.format(0, plot_top + 10, size, top), _TEXT.format(0, base, size, 0),
              Markup('<line x1="{:.1f}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="#767676"/>').format(
                  left, _WIDTH, base, base)]
    legend = ", ".join(f"{name} {sum(values)}" for name, values in series.items())
    return _svg(_WIDTH, base + 22, title, f"{sum(totals)} in all over {len(labels)} days: {legend}", parts)


def bars(rows: Sequence[tuple[str, int]], *, title: str, colour: str = "#0b3d91",
         colours: dict[str, str] | None = None) -> Markup:
    """One horizontal bar per row (label, count), in the order given, the count at its end."""
    row_height, label_width, size = 24.0, 170.0, 14
    top = max([count for _, count in rows] + [1])
    parts = []
    for i, (label, count) in enumerate(rows):
        y = i * row_height
        width = count / top * (_BARS_WIDTH - label_width - 50)
        shown = label if len(label) <= 20 else label[:19] + "…"
        parts += [_TEXT.format(0, y + 17, size, Markup("{}{}").format(shown, _TIP.format(label))),
                  _RECT.format(label_width, y + 5, width, 15, (colours or {}).get(label, colour), ""),
                  _TEXT.format(label_width + width + 6, y + 17, size, f"{count:,}")]
    desc = "; ".join(f"{label}: {count}" for label, count in rows) or "nothing yet"
    return _svg(_BARS_WIDTH, max(len(rows), 1) * row_height + 4, title, desc, parts)
