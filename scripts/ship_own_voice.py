"""Write the own-voice parts of a preset model as package data (`buckle/data/own_voice/<key>/`).

Run after a build of the default parts (a `responsible` + `anchors` job on that model, or
`bench/safety.py`): it copies the kept rows of each default part from the cache, so a fresh
install reuses them instead of spending ~15 min of CPU generating them. Only kept rows ship:
the harmful replies a build judges and drops stay on the machine that built them. A part whose
key no longer matches (new judges, new prompts) is reported and must be rebuilt first.

    .venv/bin/python scripts/ship_own_voice.py --model qwen2.5-coder-0.5b-instruct
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from buckle.atomic import atomic_write_json
from buckle.curation.own_voice import OwnVoiceSpec, part_key
from buckle.models import get_preset
from buckle.pipeline.spec import DEFAULT_ANCHORS, DEFAULT_RESPONSIBLE
from buckle.settings import buckle_home

OUT = Path(__file__).resolve().parents[1] / "buckle" / "data" / "own_voice"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a preset model name")
    args = ap.parse_args()
    fingerprint = get_preset(args.model).fingerprint
    missing = 0
    for kind, source in (("responsible", DEFAULT_RESPONSIBLE), ("anchors", DEFAULT_ANCHORS)):
        spec = OwnVoiceSpec(kind=kind, **source)
        key, _ = part_key(fingerprint, spec)
        cached = buckle_home() / "corpora" / "own-voice" / key
        if not (cached / "summary.json").is_file():
            print(f"{kind}: no finished build with key {key} in {cached.parent}; build it first",
                  file=sys.stderr)
            missing += 1
            continue
        rows = []
        for chunk in sorted((cached / "chunks").glob("*.json")):
            rows += [r for r in json.loads(chunk.read_text("utf-8")) if r["kept"]]
        summary = json.loads(cached.joinpath("summary.json").read_text("utf-8"))
        summary.pop("shipped", None)
        target = OUT / key
        shutil.rmtree(target, ignore_errors=True)
        atomic_write_json(target / "manifest.json",
                          json.loads(cached.joinpath("manifest.json").read_text("utf-8")))
        atomic_write_json(target / "kept.json", rows)
        atomic_write_json(target / "summary.json", summary)
        print(f"{kind}: {len(rows)} kept rows of {summary['prompts']} -> {target}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
