"""Charts as inline SVG, drawn on the server (the dashboard shows them; the API serves the
safety comparison as one).

Hand-written rather than a vendored JS chart library: two chart kinds (a line and grouped bars
with confidence intervals) take a few dozen lines, need no build step or script to render, and
are readable by screen readers (`role="img"`, a title and a description, and every page shows
the same numbers in a table next to the chart).
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

COLOURS = {"base": "#6b7280", "unprotected": "#dc2626", "hardened": "#2563eb"}


def _svg(width: int, height: int, title: str, desc: str, body: str) -> Markup:
    return Markup(
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-labelledby="t d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="t">{escape(title)}</title><desc id="d">{escape(desc)}</desc>{body}</svg>')


def loss_curve(points: Sequence[tuple[int, float]], title: str = "Training loss") -> Markup:
    """Loss by reported step; an empty chart says so."""
    w, h, pad = 640, 220, 36
    if not points:
        return _svg(w, h, title, "No training steps reported yet.",
                    f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle">no steps yet</text>')
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = 0.0, max(ys) * 1.05 or 1.0

    def at(x: float, y: float) -> str:
        return (f"{pad + (x - x0) / (x1 - x0) * (w - 2 * pad):.1f},"
                f"{h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad):.1f}")

    line = " ".join(at(x, y) for x, y in points)
    axes = (f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>'
            f'<text x="{pad}" y="{h - 8}" font-size="12">step {x0}</text>'
            f'<text x="{w - pad}" y="{h - 8}" font-size="12" text-anchor="end">step {x1}</text>'
            f'<text x="4" y="{pad - 8}" font-size="12">loss {y1:.2f}</text>')
    desc = (f"{len(points)} steps, loss {ys[0]:.3f} at step {xs[0]} to {ys[-1]:.3f} at step "
            f"{xs[-1]}.")
    return _svg(w, h, title, desc, axes + f'<polyline fill="none" stroke="#2563eb" '
                                          f'stroke-width="2" points="{line}"/>')


def safety_bars(metrics: dict[str, str], series: dict[str, dict[str, dict | None]],
                title: str = "Safety: base vs. adapter") -> Markup:
    """Grouped bars (one group per metric, one bar per series) with 95% CI whiskers.

    `metrics` maps a metric key to its label; `series` maps a series label (base, unprotected,
    hardened) to {metric: {value, ci_low, ci_high}}. Metrics no series has are left out.
    """
    w, row, pad, left = 640, 22, 16, 190
    names = [n for n in series if any(series[n].get(m) for m in metrics)]
    metrics = {m: label for m, label in metrics.items() if any(series[n].get(m) for n in names)}
    h = pad * 2 + len(metrics) * (len(names) * row + 14) + 24
    scale = (w - left - 120) / 1.0  # room right of a full bar for its label
    parts, y, said = [], pad, []
    for metric, label in metrics.items():
        parts.append(f'<text x="4" y="{y + row * len(names) / 2 + 4}" font-size="13">'
                     f'{escape(label)}</text>')
        for name in names:
            m = series[name].get(metric)
            colour = COLOURS.get(name, "#16a34a")
            if m:
                v, lo, hi = (float(m.get(k) or 0.0) for k in ("value", "ci_low", "ci_high"))
                parts.append(f'<rect x="{left}" y="{y + 3}" width="{v * scale:.1f}" '
                             f'height="{row - 6}" fill="{colour}"><title>{escape(name)} '
                             f'{escape(label)} {v:.1%} [{lo:.1%}, {hi:.1%}]</title></rect>')
                parts.append(f'<line x1="{left + lo * scale:.1f}" x2="{left + hi * scale:.1f}" '
                             f'y1="{y + row / 2}" y2="{y + row / 2}" stroke="#111"/>')
                parts.append(f'<text x="{left + max(v, hi) * scale + 4:.1f}" y="{y + row - 7}" '
                             f'font-size="11">{escape(name)} {v:.0%}</text>')
                said.append(f"{name} {label} {v:.0%}")
            y += row
        y += 14
    legend = "".join(f'<rect x="{left + i * 120}" y="{h - 18}" width="10" height="10" '
                     f'fill="{COLOURS.get(n, "#16a34a")}"/><text x="{left + i * 120 + 14}" '
                     f'y="{h - 9}" font-size="12">{escape(n)}</text>'
                     for i, n in enumerate(names))
    return _svg(w, h, title, "; ".join(said) or "No safety scores yet.", "".join(parts) + legend)
