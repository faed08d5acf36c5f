"""`buckle train` and `buckle run`: a hardened fine-tune from the command line.

Both build a `JobSpec` and call `buckle.pipeline.run`, exactly what a Celery worker does, so a
researcher's run and a service job are the same code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from tqdm.auto import tqdm

from buckle.cli.output import EXIT_DOMAIN
from buckle.errors import BuckleError

console = Console(stderr=True)


def _run_spec(data: dict[str, Any]) -> None:
    from pydantic import ValidationError

    from buckle.pipeline import JobSpec, run

    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        console.print(f"[bold red]error:[/] invalid job spec:\n{exc}")
        raise typer.Exit(code=EXIT_DOMAIN) from None
    bar = tqdm(total=1000, desc="job", unit="‰", dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")
    last = {"stage": None}

    def progress(event: Any) -> None:
        bar.n = int(event.fraction * 1000)
        bar.set_postfix_str(f"{event.stage}: {event.message}"[:70], refresh=True)
        if event.stage != last["stage"] and event.stage in ("curate", "train", "evaluate"):
            bar.write(f"[{event.stage}] {event.message}")
        last["stage"] = event.stage

    try:
        result = run(spec, progress=progress)
    except (BuckleError, ValueError, FileNotFoundError) as exc:
        bar.close()
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=EXIT_DOMAIN) from None
    bar.close()
    out = Console()
    out.print(f"adapter: {result.adapter_dir}")
    for name, digest in result.adapter_sha256.items():
        out.print(f"  {digest}  {name}")
    for who in ("base", "adapter"):
        m = result.safety.get(who)
        if m and m.get("asr"):
            out.print(f"{who:8s} ASR {m['asr']['value']:.1%} (n={m['n']})  harmful "
                      f"{m['harmful_rate']['value']:.1%}  over-refusal "
                      f"{(m['over_refusal_rate'] or {}).get('value', float('nan')):.1%}")


def train_cmd(
    data: Annotated[Path, typer.Option(help="Customer training data (chat or Alpaca JSONL).")],
    out: Annotated[Path, typer.Option(help="Work dir: checkpoints, corpus link, and the "
                                           "released adapter in OUT/output. Re-run to resume.")],
    model: Annotated[str, typer.Option(help="Base model preset / dir.")] = "smollm2-135m-instruct",
    policy: Annotated[str, typer.Option(help="none | pre | during | post | auto | refusal-mix | "
                                             "uncurated")] = "during",
    curated: Annotated[Path | None, typer.Option(help="Use this curated corpus (chat JSONL) "
                                                      "instead of curating one.")] = None,
    curated_ratio: Annotated[float, typer.Option(help="Share of curated items in the `during` "
                                                      "mix.")] = 0.25,
    epochs: Annotated[int, typer.Option(help="n_epochs.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Conversations per optimizer step.")] = 8,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-4,
    eval_limit: Annotated[int, typer.Option(help="Harmful prompts in the safety report.")] = 20,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="Skip the safety report.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of curation, mixing and training.")] = 0,
) -> None:
    """Fine-tune a LoRA adapter on customer data under a safety policy, then measure it."""
    _run_spec({
        "model": model, "training_file": str(data), "work_dir": str(out), "seed": seed,
        "evaluate": not no_eval,
        "hyperparameters": {"n_epochs": epochs, "batch_size": batch_size,
                            "learning_rate": learning_rate},
        "safety": {"policy": policy, "curated_ratio": curated_ratio, "eval_limit": eval_limit,
                   "curated_file": str(curated) if curated else None},
    })


def run_cmd(jobspec: Annotated[Path, typer.Argument(help="YAML (or JSON) job spec: the fields "
                                                         "of buckle.pipeline.JobSpec.")]) -> None:
    """Run a job spec file (the same spec a worker runs)."""
    try:
        data = yaml.safe_load(jobspec.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        console.print(f"[bold red]error:[/] cannot read {jobspec}: {exc}")
        raise typer.Exit(code=EXIT_DOMAIN) from None
    if not isinstance(data, dict):
        console.print(f"[bold red]error:[/] {jobspec} must hold a mapping of JobSpec fields")
        raise typer.Exit(code=EXIT_DOMAIN)
    _run_spec(data)
