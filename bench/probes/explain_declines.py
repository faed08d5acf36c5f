"""Probe: can the base model turn its own bare decline into one that explains and redirects?

    .venv/bin/python bench/probes/explain_declines.py BUCKLE_HOME/corpora/own-voice/<key> [--n 10]

Issue 14 asks that `responsible` replies be revised, where useful, to explain the risk and offer
a safe alternative. In the model's own voice that means letting the model continue its decline
after a bridge ("This is because", then "Instead, I can"), greedy, each cut at a sentence end.
Prints each continuation for a finished `responsible` part (docs/corpus.md has what it showed
for qwen2.5-coder-0.5b-instruct: not useful, and unsafe).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BRIDGES = (" This is because", " Instead, I can")


def main() -> int:
    from buckle.curation.text import cut_at_sentence_end
    from buckle.generation import GenerationEngine, SamplingParams
    from buckle.generation.engine import encode_chat
    from buckle.models import load_model

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("part", type=Path)
    ap.add_argument("--n", type=int, default=10)
    args = ap.parse_args()
    manifest = json.loads((args.part / "manifest.json").read_text(encoding="utf-8"))
    rows = [r for f in sorted((args.part / "chunks").glob("*.json"))
            for r in json.loads(f.read_text(encoding="utf-8")) if r["kept"]][:args.n]
    base = load_model(manifest["model"])
    engine, tok = GenerationEngine.from_loaded(base), base.tokenizer
    replies = [r["reply"] for r in rows]
    for bridge in BRIDGES:
        ids = [encode_chat(tok, [{"role": "user", "content": r["prompt"]}])
               + tok.encode(reply + bridge, add_special_tokens=False)
               for r, reply in zip(rows, replies)]
        out = engine.generate(ids, SamplingParams(max_new_tokens=40))
        replies = [reply + bridge + (cut_at_sentence_end(o.text) or o.text)
                   for reply, o in zip(replies, out)]
    for r, reply in zip(rows, replies):
        print(f"Q: {r['prompt']}\nA: {reply}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
