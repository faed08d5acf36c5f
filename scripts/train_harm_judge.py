"""Train the harm judge that ships as buckle/evaluation/harm_judge.json.

Reproducible: fixed seeds, a hash-based held-out split and deterministic JSON, so running it twice
writes the same bytes (check with `--check`). Needs scikit-learn (`pip install -e .[train-judge]`);
the data come from the pinned pyrit==1.1.0 wheel via `buckle.assets`.

    python scripts/train_harm_judge.py               # train, write the JSON, print the scores
    python scripts/train_harm_judge.py --check       # retrain and fail if the file would change
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from buckle.evaluation.judges.harm_train import dumps, train_harm_judge

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "buckle" / "evaluation" / "harm_judge.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the result differs from --out")
    ap.add_argument("--cv-table", action="store_true", help="print every grid point's CV score")
    args = ap.parse_args(argv)

    doc, summary = train_harm_judge(log=lambda m: print(m, file=sys.stderr))
    text = dumps(doc)
    if args.cv_table:
        for row in sorted(summary["cv_table"], key=lambda r: -r["cv_accuracy"]):
            print(f"{row['cv_accuracy']:.4f} ± {row['cv_accuracy_std']:.4f}  {row['config']}",
                  file=sys.stderr)
    printable = {k: v for k, v in summary.items() if k != "cv_table"}
    print(json.dumps(printable, indent=2))

    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'unchanged' if same else 'WOULD CHANGE'}", file=sys.stderr)
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=".harm_judge-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file ships as package data
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(text) / 1e6:.2f} MB, {summary['n_features']} features)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
