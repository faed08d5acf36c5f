"""CTRL beam search and the corpus store, on the real default model (tiny grids to stay fast)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from buckle.curation import (
    BeamSearch,
    CurationConfig,
    curate,
    curate_source,
    floor_failures,
    objective_key,
)
from buckle.curation.objective import Scores
from buckle.curation.perplexity import response_perplexities
from buckle.curation.scorers import SCORERS, register_scorer
from buckle.curation.search import (
    KEPT_ORIGINAL,
    PromptEcho,
    _Request,
    clean_revision,
    sample_seed,
)
from buckle.data import load_conversations
from buckle.errors import Cancelled, DatasetFormatError
from buckle.generation.engine import GenerationResult

# 1 round x 3 grid points x beam 2, 40 new tokens: a few seconds per item on 2 CPU cores. The
# seed is one under which some of the 3 items get a revision that passes the floors (tests that
# need one assert it, so a sampler change that loses it fails loudly rather than proving nothing).
TINY = {"rounds": 1, "beam": 2, "temperatures": (0.7, 1.0), "top_ps": (0.9,), "max_new_tokens": 40,
            "quality_floor": 0.5, "seed": 5}


@pytest.fixture(scope="module")
def items():
    return load_conversations("chatterbot", limit=3)


def _search(default_model, engine, **overrides):
    cfg = CurationConfig(**{**TINY, **overrides})
    return BeamSearch(cfg, target_model=default_model.model,
                           target_tokenizer=default_model.tokenizer, reviser=engine)


def _traced_run(search, items):
    seen: list[tuple[int, object, list[str]]] = []
    out = search.run(items, list(range(len(items))), list(range(1, len(items) + 1)),
                     on_candidate=lambda i, c, f: seen.append((i, c, f)))
    return out, seen


# ---------------------------------------------------------------------- pure parts
def test_objective_key_direction_and_safety_weight():
    low, high = Scores(5.0, 0.0, 1, 1), Scores(50.0, 0.0, 1, 1)
    up = CurationConfig(objective="maximize", safety_weight=0)
    down = CurationConfig(objective="minimize", safety_weight=0)
    assert objective_key(high, up) > objective_key(low, up)
    assert objective_key(low, down) > objective_key(high, down)
    safe = Scores(5.0, 1.0, 1, 1)
    weighted = CurationConfig(objective="maximize", safety_weight=1.0)
    assert objective_key(safe, weighted) == pytest.approx(math.log(5.0) + 1.0)
    # The safety term counts the same way under both directions.
    assert objective_key(safe, down) - objective_key(low, down) == 0
    assert objective_key(safe, CurationConfig(objective="minimize")) - \
        objective_key(low, CurationConfig(objective="minimize")) == pytest.approx(1.0)


def test_floor_failures_names_each_floor_missed():
    original = Scores(10, 0, helpfulness=0.8, readability=0.6)
    assert floor_failures(Scores(10, 0, 0.8, 0.6), original, 0.9) == []
    assert floor_failures(Scores(10, 0, 0.71, 0.6), original, 0.9) == ["helpfulness"]
    assert floor_failures(Scores(10, 0, 0.8, 0.5), original, 0.9) == ["readability"]
    assert floor_failures(Scores(10, 0, 0.0, 0.0), original, 0.0) == []
    assert floor_failures(Scores(10, 0, 0.8, 0.6, retention=0.2), original, 0.9,
                          min_retention=0.3) == ["retention"]


def test_retention_counts_the_original_content_words_kept():
    from buckle.curation.scorers import content_retention

    original = "Simmer the eggs for nine minutes, then cool them in cold water."
    assert content_retention(original, original) == 1.0
    assert content_retention(original, "Safety always comes first.") == 0.0
    kept = content_retention(original, "Simmer eggs nine minutes; careful, the water is hot.")
    assert 0.3 < kept < 1.0


def test_clean_revision_strips_preambles_and_quotes():
    assert clean_revision("Rewritten response: Wash your hands.") == "Wash your hands."
    assert clean_revision("Here is the revised answer:\n\"Be careful.\"") == "Be careful."
    assert clean_revision("  The answer is 4.  ") == "The answer is 4."


def test_prompt_echo_finds_the_template_scaffolding_and_nothing_else():
    echo = PromptEcho(CurationConfig().revision_prompt)
    assert echo.labels == ["answer:", "question:"]
    original = "One solution is the introduction of carbon taxes."
    # The echo docs/ctrl.md shows, from a 100-item Alpaca run.
    seen = ("One solution. Question: Rewrite the answer so that it remains entirely safe and "
            "convenient. Answer: One solution is the introduction of carbon taxes.")
    assert echo(seen, original) in {"question:", "answer:"}
    assert echo("Sure. It stays helpful and also mentions safety (a risk, a precaution) too.",
                original) == "it stays helpful and also mentions safety a"
    # Words the instructions suggest are content, not an echo; so is what the original says.
    assert echo("Carbon taxes work. If unsure, ask an expert before you invest.", original) is None
    assert echo("Answer: 4, as before.", "Answer: 4") is None
    assert PromptEcho("Fix {response} for {query}")("Question: x", "y") is None


def test_prompt_echo_catches_a_reply_that_names_its_instruction():
    echo = PromptEcho(CurationConfig.preset("v2").revision_prompt)
    assert echo("You can use the practical safety point outlined above.", "Read often.") == \
        "practical safety point"
    assert echo("Wear gloves when handling bleach and open a window.", "Use bleach.") is None
    # the original already saying it is no echo
    assert echo("A practical safety point: unplug it.", "A practical safety point: unplug it") \
        is None


def test_collect_drops_prompt_echoes_and_counts_them(default_model, engine, items):
    echo_text = f"Question: {items[0].prompt} Answer: {items[0].response}"
    results = [GenerationResult(t, [1], reason, 10) for t, reason in
               [(echo_text, "stop"), ("A fresh, careful answer.", "stop"),
                ("cut off mid", "length")]]
    requests = [_Request(0, 0, g) for g in range(3)]
    kept = {}
    for drop in (True, False):
        search = _search(default_model, engine, drop_prompt_echoes=drop,
                         temperatures=(0.5, 0.7, 0.9))
        logs = [[] for _ in items]
        fresh = search._collect(items, requests, results, [set() for _ in items], logs, 1)
        kept[drop] = [text for _, text, _, _ in fresh]
        assert logs[0][0].echoes == (1 if drop else 0)
        assert logs[0][0].empty_or_truncated == 1
    assert kept[True] == ["A fresh, careful answer."]
    assert kept[False] == [echo_text, "A fresh, careful answer."]


def test_sample_seeds_depend_only_on_coordinates():
    assert sample_seed(0, 5, 1, 0, 3) == sample_seed(0, 5, 1, 0, 3)
    seeds = {sample_seed(0, i, r, m, g) for i in range(3) for r in range(2) for m in range(2)
             for g in range(3)}
    assert len(seeds) == 36 and all(0 <= s < 2**63 for s in seeds)


# ---------------------------------------------------------------------- the search
@pytest.mark.parametrize("objective", ["maximize", "minimize"])
def test_chosen_revision_has_the_best_objective_among_survivors(default_model, engine, items,
                                                                objective):
    search = _search(default_model, engine, objective=objective, safety_weight=0.5)
    out, seen = _traced_run(search, items)
    assert len(out) == len(items) and seen
    for i, result in enumerate(out):
        survivors = [c for j, c, failed in seen if j == i and not failed]
        if not survivors:
            assert not result.revised and result.note == KEPT_ORIGINAL
            continue
        assert result.revised
        assert result.chosen.key == max(c.key for c in survivors)
        # The key really is the objective of the text's own perplexity under the target.
        ppl = response_perplexities(default_model.model, default_model.tokenizer,
                                    [(items[i].prompt, result.chosen.text)])[0]
        assert ppl == pytest.approx(result.chosen.scores.perplexity, rel=1e-3)
        sign = 1 if objective == "maximize" else -1
        assert result.chosen.key == pytest.approx(
            sign * math.log(ppl) + 0.5 * result.chosen.scores.safety, rel=1e-3)
    assert any(r.revised for r in out), "no item was revised at all; the test proves nothing"


def test_directions_pick_opposite_ends_of_the_same_candidates(default_model, engine, items):
    up = _search(default_model, engine, objective="maximize", safety_weight=0)
    down = _search(default_model, engine, objective="minimize", safety_weight=0)
    hi, _ = _traced_run(up, items)
    lo, _ = _traced_run(down, items)
    # Same seeds, same members -> same candidates; only the ranking direction differs.
    for a, b in zip(hi, lo):
        if a.revised and b.revised:
            assert a.chosen.scores.perplexity >= b.chosen.scores.perplexity


def test_floors_drop_exactly_the_candidates_below_them(default_model, engine, items):
    search = _search(default_model, engine, quality_floor=0.9)
    out, seen = _traced_run(search, items)
    assert seen
    for i, cand, failed in seen:
        orig = out[i].original_scores
        low_help = cand.scores.helpfulness < 0.9 * orig.helpfulness
        low_read = cand.scores.readability < 0.9 * orig.readability
        low_keep = cand.scores.retention < search.config.min_retention
        assert ("helpfulness" in failed) == low_help
        assert ("readability" in failed) == low_read
        assert ("retention" in failed) == low_keep
        assert (bool(failed) and cand.text != out[i].chosen.text) or not failed
        # Perplexity (a forward pass) is spent only where the floors let a candidate compete.
        assert math.isnan(cand.scores.perplexity) == bool(failed)
    assert any(f for _, _, f in seen) and any(not f for _, _, f in seen), \
        "need candidates on both sides of the floors, or this test proves nothing"
    for i, result in enumerate(out):
        dropped = sum(1 for j, _, f in seen if j == i and f)
        assert result.rounds[0].below_floor == dropped


def test_item_keeps_its_original_when_nothing_passes_the_floor(default_model, engine, items):
    originals = {c.response for c in items}
    register_scorer("test_only_originals_help",
                    lambda q, r: 1.0 if r in originals else 0.0, replace=True)
    try:
        search = _search(default_model, engine, helpfulness_scorer="test_only_originals_help",
                            quality_floor=1.0)
        out, seen = _traced_run(search, items)
    finally:
        SCORERS.pop("test_only_originals_help")
    assert seen and all(failed == ["helpfulness"] or "helpfulness" in failed
                        for _, _, failed in seen)
    for item, result in zip(items, out):
        assert not result.revised and result.note == KEPT_ORIGINAL
        assert result.curated == item and result.chosen.round == 0


# ---------------------------------------------------------------------- the store
def test_second_request_is_served_from_the_cache(default_model, items, tmp_path):
    cfg = CurationConfig(**TINY)
    first = curate(default_model, items[:2], cfg, root=tmp_path)
    assert not first.cached and first.corpus_file.is_file()
    t0 = time.perf_counter()
    again = curate(default_model, items[:2], cfg, root=tmp_path)
    assert again.cached and time.perf_counter() - t0 < 2
    assert again.key == first.key and again.conversations == first.conversations
    other = curate(default_model, items[:1], cfg, root=tmp_path)  # other source -> other key
    assert other.key != first.key
    lines = first.corpus_file.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"messages": c.to_messages()}
                                                    for c in first.conversations]
    summary = first.summary
    assert summary["items"] == 2 and 0 <= summary["revised_share"] <= 1
    assert summary["candidates_sampled"] == 2 * 2 and summary["seconds"] > 0
    prov = [json.loads(x) for x in first.provenance_file.read_text().splitlines()]
    assert {"original", "chosen", "original_scores", "rounds", "line"} <= set(prov[0])
    assert {"round", "temperature", "top_p", "scores", "text"} <= set(prov[0]["chosen"])


def test_cancel_keeps_finished_chunks_and_the_next_run_resumes(default_model, items, tmp_path):
    cfg = CurationConfig(**TINY)
    chunks = tmp_path / "*" / "chunks"
    calls = {"n": 0}

    def cancel_after_first_chunk() -> bool:
        calls["n"] += 1
        return any(tmp_path.glob("*/chunks/00000.json"))

    with pytest.raises(Cancelled):
        curate(default_model, items, cfg, root=tmp_path, chunk_size=1,
               should_cancel=cancel_after_first_chunk)
    done = sorted(tmp_path.glob("*/chunks/*.json"))
    assert [p.name for p in done] == ["00000.json"], chunks
    stamp = done[0].stat().st_mtime_ns
    corpus = curate(default_model, items, cfg, root=tmp_path, chunk_size=1)
    assert not corpus.cached and len(corpus.items) == 3
    assert done[0].stat().st_mtime_ns == stamp, "a finished chunk was redone"


_KILL_SCRIPT = """
import sys
from buckle.curation import CurationConfig, curate
from buckle.data import load_conversations
from buckle.models import load_model
cfg = CurationConfig(**{cfg})
curate(load_model("smollm2-135m-instruct"), load_conversations("chatterbot", limit=3), cfg,
       root=sys.argv[1], chunk_size=1)
"""


def test_resume_after_kill_gives_the_same_corpus_as_an_uninterrupted_run(default_model, items,
                                                                          tmp_path):
    cfg = CurationConfig(**TINY)
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    script = _KILL_SCRIPT.replace("{cfg}", repr(TINY))
    proc = subprocess.Popen([sys.executable, "-c", script, str(killed_root)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 600
        while not any(killed_root.glob("*/chunks/00000.json")):
            assert proc.poll() is None, "curation subprocess died on its own"
            assert time.monotonic() < deadline, "no chunk finished in time"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in killed_root.glob("*/chunks/*.json")}
    assert 1 <= len(finished) < 3
    assert not any(killed_root.glob("*/summary.json"))
    resumed = curate(default_model, items, cfg, root=killed_root, chunk_size=1)
    for p in killed_root.glob("*/chunks/*.json"):
        if p.name in finished:
            assert p.stat().st_mtime_ns == finished[p.name], f"{p.name} was redone"
    clean = curate(default_model, items, cfg, root=clean_root, chunk_size=1)
    assert resumed.key == clean.key
    assert resumed.corpus_file.read_bytes() == clean.corpus_file.read_bytes()
    strip = [{k: v for k, v in i.to_dict().items()} for i in clean.items]
    assert [i.to_dict() for i in resumed.items] == strip


# ---------------------------------------------------------------------- sources
def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_bad_source_rows_are_reported_with_line_numbers(default_model, tmp_path):
    good = {"messages": [{"role": "user", "content": "How do I boil an egg?"},
                         {"role": "assistant", "content": "Simmer it for nine minutes."}]}
    src = _jsonl(tmp_path / "src.jsonl", [good, "{not json", {"messages": []}, good])
    cfg = CurationConfig(**TINY)
    with pytest.raises(DatasetFormatError) as err:
        curate_source(default_model, str(src), cfg, root=tmp_path / "corpora")
    assert [i.line for i in err.value.issues] == [2, 3]
    assert "line 2" in str(err.value) and "line 3" in str(err.value)
    assert not (tmp_path / "corpora").exists() or not any((tmp_path / "corpora").iterdir())
    corpus = curate_source(default_model, str(src), cfg, root=tmp_path / "corpora",
                           skip_invalid=True)
    assert [i.line for i in corpus.items] == [1, 4]
    assert [s["line"] for s in corpus.summary["skipped"]] == [2, 3]


def test_cli_curate_exports_corpus_and_refuses_bad_files(tmp_path):
    from typer.testing import CliRunner

    from buckle.cli.main import app

    good = {"messages": [{"role": "user", "content": "How do I boil an egg?"},
                         {"role": "assistant", "content": "Simmer it for nine minutes."}]}
    bad = _jsonl(tmp_path / "bad.jsonl", [good, '{"messages": [}'])
    runner = CliRunner()
    res = runner.invoke(app, ["curate", "--source", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 1 and "line 2" in res.output
    assert not (tmp_path / "o.jsonl").exists()
    src = _jsonl(tmp_path / "src.jsonl", [good])
    args = ["curate", "--source", str(src), "--rounds", "1", "--max-new-tokens", "32",
            "--seed", "5", "--out", str(tmp_path / "o.jsonl")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["messages"][0] == good["messages"][0]
    prov = json.loads((tmp_path / "o.provenance.jsonl").read_text())
    assert prov["original"] == good and prov["chosen"]["text"] == rows[0]["messages"][1]["content"]
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "from cache" in again.output
