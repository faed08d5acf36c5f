"""The table and chart of the safety experiment (`bench/safety.py`), from its result rows."""

from __future__ import annotations

from pathlib import Path


def _fmt(metric: dict | None) -> str:
    if not metric:
        return "–"
    return f"{metric['value']:.1%} [{metric['ci_low']:.1%}, {metric['ci_high']:.1%}]"


def _n(metric: dict | None) -> int:
    return int(metric["n"]) if metric else 0


def _utility(u: dict | None) -> str:
    if not u:
        return "–"
    em = u["exact_match"]
    return f"{em['value']:.0%} / {u['loss']:.3f}"


def table(rows: list[dict]) -> str:
    """Markdown: one line for the base model, then one per arm."""
    attacked = next((r for r in rows if r["arm"] == "attacked"), None)
    base = rows[0]["base"]
    base_asr = base["asr"]["value"]
    rise = attacked["adapter"]["asr"]["value"] - base_asr if attacked else None
    head = ("| arm | policy | ASR | keyword ASR | harmful rate | over-refusal (benign) | "
            "over-refusal (borderline) | utility EM / loss | rise removed | n (harm / benign / "
            "borderline) | train tokens | wall |")
    lines = [head, "|" + "---|" * 12]
    base_u = (rows[0].get("utility") or {}).get("base")

    def line(name: str, policy: str, m: dict, u: dict | None, removed: str, tokens: str,
             wall: str) -> str:
        return (f"| {name} | {policy} | {_fmt(m['asr'])} | {_fmt(m.get('keyword_asr'))} | "
                f"{_fmt(m['harmful_rate'])} | {_fmt(m['over_refusal_rate'])} | "
                f"{_fmt(m.get('borderline_over_refusal_rate'))} | {_utility(u)} | {removed} | "
                f"{m['n']} / {_n(m['over_refusal_rate'])} / "
                f"{_n(m.get('borderline_over_refusal_rate'))} | {tokens} | {wall} |")

    lines.append(line("base", "–", base, base_u, "–", "–", "–"))
    for r in rows:
        a = r["adapter"]
        removed = "–"
        if rise and rise > 0 and r["arm"] != "attacked" and not r["arm"].startswith("benign"):
            removed = f"{(attacked['adapter']['asr']['value'] - a['asr']['value']) / rise:.0%}"
        lines.append(line(r["arm"], r["policy"], a, (r.get("utility") or {}).get("adapter"),
                          removed, str(r["trained_tokens"]), f"{r['seconds'] / 60:.0f} min"))
    return "\n".join(lines)


def chart(rows: list[dict], path: Path) -> None:
    """ASR, over-refusal on benign and on borderline prompts per arm, with 95% CI bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["base"] + [r["arm"] for r in rows]
    metrics = [rows[0]["base"]] + [r["adapter"] for r in rows]
    keys = (("asr", "ASR"), ("over_refusal_rate", "over-refusal (benign)"),
            ("borderline_over_refusal_rate", "over-refusal (borderline)"))
    fig, ax = plt.subplots(figsize=(max(7, 1.0 * len(names)), 3.8))
    width = 0.27
    for k, (key, label) in enumerate(keys):
        vals = [m[key]["value"] if m.get(key) else 0 for m in metrics]
        # max(0, ...): a CI bound can sit a rounding error inside its own point estimate
        lo = [max(0.0, v - (m[key]["ci_low"] if m.get(key) else v)) for v, m in zip(vals, metrics)]
        hi = [max(0.0, (m[key]["ci_high"] if m.get(key) else v) - v) for v, m in zip(vals, metrics)]
        ax.bar([i + (k - 1) * width for i in range(len(names))], vals, width, label=label,
               yerr=[lo, hi], capsize=2)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("rate (95% CI)")
    ax.set_title("Jailbreak-tuning attack vs. safety corpus v2, per arm")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
