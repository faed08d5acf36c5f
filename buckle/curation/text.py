"""Small text helpers shared by the corpus builders."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (optionally followed by a closing quote or bracket) before
# whitespace; "e.g." and "1." are not distinguished, which only ever makes a cut shorter.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)")
MIN_KEPT = 0.4  # share of the text a cut must keep; less means the reply is mostly lost


def cut_at_sentence_end(text: str, min_kept: float = MIN_KEPT) -> str | None:
    """`text` (a reply stopped by the token cap) cut after its last complete sentence.

    Returns None when no sentence end leaves at least `min_kept` of the text: such a reply is
    better dropped than taught half-finished. An open code fence is never left behind.
    """
    body = text.rstrip()
    if body.endswith((".", "!", "?")):
        candidate = body
    else:
        ends = [m.end() for m in _SENTENCE_END.finditer(body + " ")]
        if not ends:
            return None
        candidate = body[:ends[-1]].rstrip()
    if candidate.count("```") % 2:
        candidate = candidate[:candidate.rfind("```")].rstrip()
    if len(candidate) < min_kept * len(body) or not candidate:
        return None
    return candidate
