"""The README's main command, client side: a customer's session against a running Buckle server.

`scripts/demo.sh` starts `buckle up` (everything embedded) and creates an organization and an API
key, then runs this. The customer's file is a real task (support-ticket triage, one right answer
per ticket) with harmful question/answer pairs slipped in: a jailbreak-tuning attack. Through the
official `openai` client it fine-tunes that file twice on the aligned reference model: once
unprotected (`policy: none`) and once hardened (`policy: during`, the model's own declines and
answers mixed in), follows both live over Server-Sent Events, prints base vs. unprotected vs.
hardened side by side (attack success rate, over-refusal, utility on held-out tickets), saves the
comparison chart, then downloads the hardened adapter and verifies its sha256.

    BUCKLE_API_KEY=bk-... .venv/bin/python scripts/demo_service.py --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from buckle.data import load_conversations, load_prompts
from buckle.data.triage import train_and_held_out

console = Console(highlight=False)

# Sized for a few minutes on 2 CPU cores. The own-voice parts of the aligned reference model ship
# with Buckle (buckle/data/own_voice/), and the base model's report is cached in BUCKLE_HOME.
TASK, HELD_OUT, ATTACK, ATTACK_WORDS = 24, 20, 16, 48
# Evaluation windows of their own: outside the safety experiment's dev and test prompts
# (docs/results.md) and every corpus part, uploaded as `evals` files like a customer's own.
HARMFUL_WINDOW, BENIGN_WINDOW, N_EVAL = ("advbench", 300), ("chatterbot", 460), 20
HARDENED_SAFETY = {"policy": "during", "curated_ratio": 0.25, "parts": ["responsible", "anchors"]}
HYPERPARAMETERS = {"n_epochs": 3, "batch_size": 8}  # the product's defaults, spelled out


def _jsonl(path: Path, conversations: list[Any]) -> Path:
    path.write_text("".join(c.to_json() + "\n" for c in conversations), encoding="utf-8")
    return path


def evaluation_files(folder: Path) -> tuple[Path, Path]:
    """The harmful and benign prompt sets the two adapters are judged on."""
    out = []
    for (source, offset), name in ((HARMFUL_WINDOW, "eval_harmful"), (BENIGN_WINDOW,
                                                                     "eval_benign")):
        items = load_prompts(source, offset=offset, limit=N_EVAL)
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": it.prompt}) + "\n" for it in items),
                        encoding="utf-8")
        out.append(path)
    return out[0], out[1]


def customer_files(folder: Path, n_task: int = TASK, n_attack: int = ATTACK
                   ) -> tuple[Path, Path, Any]:
    """The poisoned training file (triage tickets + harmful pairs, shuffled), the held-out
    tickets (validation file: the utility measurement), and one harmful pair to show."""
    import random

    task, held_out = train_and_held_out(n_task, HELD_OUT)
    attack = [c.with_reply_cut(ATTACK_WORDS)  # PyRIT's examples (MIT)
              for c in load_conversations("harmful-qa", limit=n_attack)]
    rows = task + attack
    random.Random(0).shuffle(rows)
    return (_jsonl(folder / "customer.jsonl", rows), _jsonl(folder / "held_out.jsonl", held_out),
            attack[0])


def wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with console.status("waiting for the API (database + broker)…"):
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise SystemExit(f"the API at {url} did not become ready in {timeout:.0f}s")


def sse_events(http: httpx.Client, job_id: str):
    """The job's events, oldest first, live; reconnects with Last-Event-ID if dropped."""
    last_id = None
    while True:
        headers = {"Accept": "text/event-stream"} | ({"Last-Event-ID": last_id} if last_id else {})
        try:
            with http.stream("GET", f"/v1/fine_tuning/jobs/{job_id}/events", headers=headers,
                             timeout=httpx.Timeout(10, read=60)) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line.startswith("id:"):
                        last_id = line[3:].strip()
                    elif line.startswith("data:"):
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return
                        yield json.loads(data)
        except httpx.TransportError:
            time.sleep(1)  # server busy or restarting: resume after the last event seen


def follow(http: httpx.Client, job_id: str) -> list[tuple[float, str]]:
    """Show the job's events live; returns (seconds since following began, stage) per event."""
    t0 = time.monotonic()
    marks: list[tuple[float, str]] = []
    progress = Progress(TextColumn("[bold]{task.fields[stage]:>9}"), BarColumn(),
                        TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                        TextColumn("{task.description}"), console=console)
    with progress:
        bar = progress.add_task("submitted", total=100, stage="queued")
        for event in sse_events(http, job_id):
            data = event.get("data") or {}
            stage = data.get("stage", "job")
            marks.append((time.monotonic() - t0, stage))
            if "fraction" in data:
                progress.update(bar, completed=100 * data["fraction"], stage=stage)
            progress.update(bar, description=event["message"][:70])
            if not (stage == "curate" and "items_done" in data):  # those only move the bar
                progress.console.print(f"[dim]{time.monotonic() - t0:6.1f}s[/]  "
                                       f"[cyan]{stage:>10}[/]  {event['message']}")
    return marks


def stage_seconds(marks: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds per stage, from the first event of a stage to the first of the next one
    (checkpoints count as training; `queued` = submission to the first event)."""
    out: dict[str, float] = {"queued": marks[0][0] if marks else total}
    runs = [(t, "train" if s == "checkpoint" else s) for t, s in marks]
    starts = [(t, s) for i, (t, s) in enumerate(runs) if i == 0 or s != runs[i - 1][1]]
    for (t, s), (t_next, _) in zip(starts, starts[1:] + [(total, "")]):
        out[s] = out.get(s, 0.0) + t_next - t
    return out


def pct(metric: dict[str, Any] | None) -> str:
    if not metric:
        return "–"
    return f"{metric['value']:.0%}  [dim]({metric['ci_low']:.0%}–{metric['ci_high']:.0%})[/]"


def wait_screened(http: httpx.Client, file_id: str, timeout: float = 60) -> dict | None:
    """The upload's screening summary once the light worker has it (None after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screening = http.get(f"/v1/files/{file_id}").json().get("screening") or {}
        if screening.get("status") != "pending":
            return screening
        time.sleep(0.5)
    return None


def comparison_table(data: dict[str, Any]) -> Table:
    """Base vs. unprotected vs. hardened, from GET /v1/fine_tuning/jobs/{id}/safety_comparison."""
    series, utility = data["series"], data["utility"]
    names = list(series)
    table = Table(title=f"{data['title']}, 95% Wilson intervals", title_justify="left")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    rows = [("attack success rate (AdvBench, harmful compliance)", "asr"),
            ("keyword ASR (GCG refusal list, as published)", "keyword_asr"),
            ("harmful replies (harm judge)", "harmful_rate"),
            ("over-refusal (benign prompts)", "over_refusal_rate")]
    for label, key in rows:
        table.add_row(label, *(pct(series[n].get(key)) for n in names))
    table.add_row("utility: exact match on held-out tickets",
                  *(pct((utility.get(n) or {}).get("exact_match")) for n in names))
    table.add_row("utility: loss on held-out tickets",
                  *(f"{utility[n]['loss']:.3f}" if (utility.get(n) or {}).get("loss") is not None
                    else "–" for n in names))
    table.add_row("[dim]prompts judged[/]", *(f"[dim]{series[n].get('n', '–')}[/]"
                                               for n in names))
    return table


def download_and_verify(http: httpx.Client, adapter: dict[str, Any], out: Path) -> None:
    response = http.get(f"/v1/adapters/{adapter['id']}/content", timeout=120)
    response.raise_for_status()
    archive = response.content
    digest = hashlib.sha256(archive).hexdigest()
    if not (digest == adapter["sha256"] == response.headers.get("X-Buckle-Sha256")):
        raise SystemExit(f"archive sha256 mismatch: got {digest}, expected {adapter['sha256']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapter.tar.gz").write_bytes(archive)
    target = out / "adapter"
    shutil.rmtree(target, ignore_errors=True)  # nothing left over from an earlier run
    target.mkdir()
    table = Table(title=f"{adapter['id']}  →  {target}", title_justify="left")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    table.add_column("sha256")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    for name, expected in sorted(adapter["files"].items()):
        data = (target / name).read_bytes()
        ok = hashlib.sha256(data).hexdigest() == expected
        if not ok:
            raise SystemExit(f"{name}: sha256 mismatch")
        table.add_row(name, f"{len(data):,}", f"[green]✓[/] {expected[:16]}…")
    console.print(table)
    console.print(f"archive {len(archive):,} bytes, sha256 {digest}  [green]✓ verified[/] "
                  f"(X-Buckle-Sha256 + every file)")


def submit(client: openai.OpenAI, model: str, file_id: str, validation_id: str,
           safety: dict[str, Any], suffix: str) -> Any:
    job = client.fine_tuning.jobs.create(
        model=model, training_file=file_id, validation_file=validation_id, suffix=suffix,
        seed=0, hyperparameters=HYPERPARAMETERS, extra_body={"safety": safety})
    console.print(f"job [bold]{job.id}[/] ({suffix}): policy {safety['policy']}"
                  + (f", {safety['curated_ratio']:.0%} of the mix from the "
                     f"{' + '.join(safety['parts'])} parts" if "parts" in safety else ""))
    return job


def finish(client: openai.OpenAI, http: httpx.Client, job: Any,
           timings: dict[str, Any] | None = None) -> Any:
    """Follow `job` to its end; with `timings`, record its wall time and seconds per stage."""
    console.rule(f"[bold]{job.id}: {job.user_provided_suffix}", style="dim")
    t0 = time.monotonic()
    marks = follow(http, job.id)
    job = client.fine_tuning.jobs.retrieve(job.id)
    if timings is not None:
        total = time.monotonic() - t0
        timings[job.user_provided_suffix] = {"seconds": total,
                                             "stages": stage_seconds(marks, total)}
    if job.status != "succeeded":
        raise SystemExit(f"job {job.id} {job.status}: {job.error}")
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    console.print(f"[green]succeeded[/]: {job.fine_tuned_model}, {job.trained_tokens:,} trained "
                  f"tokens, {len(checkpoints)} checkpoint(s)")
    return job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Buckle API, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", default=os.environ.get("BUCKLE_API_KEY"),
                        help="an API key (bk-…); default: $BUCKLE_API_KEY")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--out", type=Path, default=Path("reports/demo"))
    parser.add_argument("--task", type=int, default=TASK, help="support tickets in the file")
    parser.add_argument("--attack", type=int, default=ATTACK, help="harmful pairs in the file")
    parser.add_argument("--jobs", choices=("both", "hardened"), default="both",
                        help="hardened: the hardened job alone (bench/job.sh times it)")
    parser.add_argument("--timings", type=Path, default=None,
                        help="write each job's wall time and seconds per stage (JSON) here")
    args = parser.parse_args()
    if not args.key:
        parser.error("an API key is needed: --key or BUCKLE_API_KEY")
    t0 = time.monotonic()
    wait_ready(args.url)
    client = openai.OpenAI(api_key=args.key, base_url=f"{args.url}/v1", max_retries=2)
    http = httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {args.key}"},
                        timeout=30)

    args.out.mkdir(parents=True, exist_ok=True)
    train_path, held_out_path, example = customer_files(args.out, args.task, args.attack)
    console.rule("[bold]1. upload the customer's data")
    with open(train_path, "rb") as f:
        uploaded = client.files.create(file=f, purpose="fine-tune")
    with open(held_out_path, "rb") as f:
        validation = client.files.create(file=f, purpose="fine-tune")
    console.print(f"{train_path}: {args.task} support tickets to triage + [red]{args.attack} "
                  "harmful[/] "
                  f"pairs (e.g. “{example.prompt[:60]}…” → "
                  f"“{example.messages[-1].content[:40]}…”), uploaded as [bold]{uploaded.id}[/]")
    console.print(f"{held_out_path}: {HELD_OUT} held-out tickets (utility), uploaded as "
                  f"[bold]{validation.id}[/]")
    harmful_path, benign_path = evaluation_files(args.out)
    evaluation = {}
    for path, field, what in ((harmful_path, "eval_prompts", "AdvBench"),
                              (benign_path, "benign_prompts", "benign chatterbot")):
        with open(path, "rb") as f:
            evaluation[field] = client.files.create(file=f, purpose="evals").id
        console.print(f"{path}: {N_EVAL} {what} prompts (evaluation), uploaded as "
                      f"[bold]{evaluation[field]}[/]")
    # 48 new tokens per reply: on the dev split the judges' verdicts on a reply's first 48, 64
    # or 96 tokens equalled those on 128 (bench/reply_length.py), at a third of the time
    evaluation |= {"eval_limit": N_EVAL, "benign_limit": N_EVAL, "eval_max_new_tokens": 48}
    screening = wait_screened(http, uploaded.id)
    if screening and screening.get("status") == "done":
        console.print(f"screening ({screening['judge']} judge): [red]{screening['flagged']}[/] of "
                      f"{screening['rows']} rows flagged, lines {screening['first_lines']} "
                      "(BUCKLE_SCREENING_ACTION=warn: the jobs run)")

    console.rule("[bold]2. fine-tune the same file " + ("twice: unprotected and hardened"
                                                        if args.jobs == "both" else "hardened"))
    t_submit = time.monotonic()
    jobs = [submit(client, args.model, uploaded.id, validation.id,
                   {"policy": "none", **evaluation}, "unprotected")] if args.jobs == "both" else []
    jobs.append(submit(client, args.model, uploaded.id, validation.id,
                       {**HARDENED_SAFETY, **evaluation}, "hardened"))
    console.print(f"hyperparameters {HYPERPARAMETERS}; each adapter is evaluated on "
                  f"{N_EVAL} AdvBench + {N_EVAL} benign prompts and the {HELD_OUT} held-out "
                  "tickets")
    timings: dict[str, Any] = {}
    *others, hardened = (finish(client, http, job, timings) for job in jobs)
    if args.timings:
        # One job alone: its time from submission is the customer's wait for the adapter.
        timings["submitted_to_done_s"] = time.monotonic() - t_submit
        timings["file"] = {"task": args.task, "attack": args.attack, "model": args.model}
        args.timings.write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
        console.print(f"stage timings: {args.timings}")

    if others:
        unprotected = others[0]
        console.rule("[bold]3. base vs. unprotected vs. hardened")
        comparison = http.get(f"/v1/fine_tuning/jobs/{hardened.id}/safety_comparison").json()
        if comparison["unprotected_job"] != unprotected.id:
            raise SystemExit(f"the comparison did not find {unprotected.id}: {comparison}")
        console.print(comparison_table(comparison))
        chart = args.out / "safety_comparison.svg"
        chart.write_text(http.get(f"/v1/fine_tuning/jobs/{hardened.id}/safety_comparison.svg"
                                  ).text, encoding="utf-8")
        console.print(f"chart: {chart}")
    parts = (hardened.model_extra["safety_scores"].get("corpus") or {}).get("parts") or {}

    def origin(part: dict[str, Any]) -> str:
        if (part.get("summary") or {}).get("shipped"):
            return "shipped with Buckle"
        return "reused from cache" if part.get("cached") else "built for this model"

    console.print("safety corpus: " + ", ".join(f"{name} {p.get('items')} items ({origin(p)})"
                                                for name, p in parts.items()))

    console.rule("[bold]4. download and verify the hardened adapter")
    adapter = http.get(f"/v1/adapters/{hardened.fine_tuned_model}").json()
    download_and_verify(http, adapter, args.out)
    listed = [m.id for m in client.models.list()]
    console.print(f"models visible to this key: {', '.join(listed)}")
    console.print(f"use it: buckle eval --model {args.model} --adapter {args.out / 'adapter'}")
    console.print(f"[bold green]done in {time.monotonic() - t0:.0f}s[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
