"""`buckle curate`: build (or reuse) a CTRL-curated corpus and export it as chat JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from buckle.cli.output import EXIT_DOMAIN
from buckle.errors import BuckleError

console = Console(stderr=True)


def curate_cmd(
    model: Annotated[str, typer.Option(help="Target model: preset name, local dir or HF id.")
                     ] = "smollm2-135m-instruct",
    source: Annotated[str, typer.Option(help="chatterbot, alpaca:PATH, or a chat/Alpaca JSONL "
                                             "file.")] = "chatterbot",
    limit: Annotated[int, typer.Option(help="How many source items (0 = all).")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many source items first.")] = 0,
    grid: Annotated[str, typer.Option(help="Preset: quick (2x2 grid, 2 rounds, beam 2) or "
                                           "paper (5x5, 5 rounds, beam 3).")] = "quick",
    rounds: Annotated[int | None, typer.Option(help="Override the preset's rounds.")] = None,
    beam: Annotated[int | None, typer.Option(help="Override the preset's beam width.")] = None,
    objective: Annotated[str | None, typer.Option(
        help="maximize (Buckle Up, default) or minimize (clean-data curation) perplexity.")
    ] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Revision length cap.")] = None,
    reviser: Annotated[str | None, typer.Option(help="Model that writes revisions (default: "
                                                     "the target itself).")] = None,
    seed: Annotated[int, typer.Option(help="Base seed of all sampling.")] = 0,
    skip_invalid: Annotated[bool, typer.Option(
        help="Leave out bad source rows (reported by line) instead of refusing the file.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Curated corpus (chat JSONL); provenance goes to "
                                           "<stem>.provenance.jsonl next to it.")
                   ] = Path("curated.jsonl"),
) -> None:
    """Curate safety-conscious revisions of a commonsense source, scored by the target model.

    The corpus is stored under BUCKLE_HOME/corpora and reused for the same (model, items,
    config); an interrupted run resumes where it stopped.
    """
    from buckle.curation import CurationConfig, curate_source
    from buckle.models import load_model

    overrides = {k: v for k, v in {"rounds": rounds, "beam": beam, "objective": objective,
                                       "max_new_tokens": max_new_tokens, "reviser_model": reviser,
                                       "seed": seed}.items() if v is not None}
    try:
        config = CurationConfig.preset(grid, **overrides)
        with console.status(f"loading {model}"):
            target = load_model(model)
            revising = load_model(reviser) if reviser else None
        bar = tqdm(total=limit or None, desc="curate", unit="item", dynamic_ncols=True)

        def progress(p) -> None:
            bar.total = p.items_total
            bar.n = p.items_done
            bar.set_postfix(candidates=p.candidates, round=p.round or "-", refresh=False)
            bar.refresh()

        corpus = curate_source(target, source, config, limit=limit or None, offset=offset,
                               skip_invalid=skip_invalid, reviser=revising, progress=progress)
        bar.close()
    except (BuckleError, ValueError, FileNotFoundError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=EXIT_DOMAIN) from None
    for issue in corpus.skipped:
        console.print(f"[yellow]skipped[/] {source} line {issue.line}: {issue.reason}")
    corpus_path, provenance = corpus.export(out)
    Console().print(_summary_table(corpus.summary, corpus.cached))
    Console().print(f"corpus:     {corpus_path}\nprovenance: {provenance}\nstored:     "
                    f"{corpus.path}")


def _summary_table(s: dict, cached: bool) -> Table:
    table = Table(title="CTRL curation" + (" (from cache)" if cached else ""))
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for name in ("perplexity", "safety", "helpfulness", "readability"):
        table.add_row(f"mean {name}", f"{s[f'mean_{name}_before']:.3f}",
                      f"{s[f'mean_{name}_after']:.3f}")
    table.add_row("share with safety cues", f"{s['safety_cue_share_before']:.0%}",
                  f"{s['safety_cue_share_after']:.0%}")
    table.caption = (f"{s['items']} items, {s['revised_share']:.0%} revised, objective "
                     f"{s['objective']}, {s['candidates_scored']} candidates scored, "
                     f"{s['seconds']:.0f} s")
    return table


