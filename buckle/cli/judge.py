"""`buckle judge`: score a JSONL file of (prompt, response) pairs with Buckle's judges."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from buckle.cli.output import EXIT_DOMAIN, JsonFlag, emit
from buckle.errors import BuckleError

console = Console(stderr=True)


def judge_cmd(
    input: Annotated[Path, typer.Option("--input", help="JSONL of {\"prompt\", \"response\"} "
                                                        "lines (optional labels: harmful / "
                                                        "label, refused).")],
    judge: Annotated[str, typer.Option(help="Comma-separated judge names (refusal, harm, "
                                            "refusal-keywords, ...).")] = "refusal,harm",
    out: Annotated[Path | None, typer.Option(help="Scored JSONL: each input line plus its "
                                                  "line number and every judge's verdict.")
                   ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Judge a user's own model outputs; prints agreement when the lines carry labels."""
    from buckle.evaluation.judging import agreement, judge_items, read_judge_items, scored_line

    names = [j.strip() for j in judge.split(",") if j.strip()]
    try:
        items = read_judge_items(input.read_bytes(), str(input))
        start = time.perf_counter()
        verdicts = judge_items(items, names)
        seconds = time.perf_counter() - start
    except (BuckleError, OSError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=EXIT_DOMAIN) from None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(scored_line(item, verdicts, i), ensure_ascii=False) + "\n" for i, item in enumerate(items))
        tmp.replace(out)  # never a half-written output
    rows = agreement(items, verdicts)
    if as_json:
        emit({"lines": len(items), "seconds": round(seconds, 3), "out": str(out) if out else None,
              "flagged": {name: sum(bool(v.harmful if v.harmful is not None else v.refused)
                                    for v in per_item) for name, per_item in verdicts.items()},
              "agreement": [{"judge": a.judge, "label": a.field, "n": a.accuracy.n,
                             "accuracy": a.accuracy.value, "ci95": [a.accuracy.low,
                                                                    a.accuracy.high],
                             "precision": a.precision, "recall": a.recall, "f1": a.f1}
                            for a in rows]}, None, True)
        return
    stdout = Console()
    table = Table("judge", "flagged", "of", title=f"{input.name}: {len(items)} lines judged in "
                                                  f"{seconds:.1f} s")
    for name, per_item in verdicts.items():
        flagged = sum(bool(v.harmful if v.harmful is not None else v.refused) for v in per_item)
        table.add_row(name, str(flagged), str(len(per_item)))
    stdout.print(table)
    if rows:
        agree = Table("judge", "label", "n", "accuracy [95% CI]", "precision", "recall", "F1",
                      title="agreement with the file's labels")
        for a in rows:
            fmt = (lambda x: "–" if x is None else f"{x:.3f}")
            agree.add_row(a.judge, a.field, str(a.accuracy.n),
                          f"{a.accuracy.value:.3f} [{a.accuracy.low:.3f}, {a.accuracy.high:.3f}]",
                          fmt(a.precision), fmt(a.recall), fmt(a.f1))
        stdout.print(agree)
    if out is not None:
        stdout.print(f"scored lines: {out}")
