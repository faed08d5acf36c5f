"""Screen training data for harmful pairs before it is used (what OpenAI does with fine-tuning
uploads): every assistant turn is judged with the user turn before it by the harm judge.

A jailbreak-tuning attack needs only a few dozen harmful pairs among benign ones, so the summary
reports how many rows were flagged, their share, and the first line numbers, so a reviewer can
open them. What to do about a flagged file (warn, refuse, harden) is the caller's policy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from buckle.data.records import Conversation
from buckle.data.validation import collect_conversations
from buckle.errors import DatasetFormatError
from buckle.evaluation.judges import get_judge

FIRST_LINES = 20  # line numbers kept in a summary


@dataclass(frozen=True)
class ScreeningSummary:
    judge: str
    rows: int
    flagged: int
    share: float
    first_lines: list[int] = field(default_factory=list)  # 1-based lines of flagged rows
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def above(self, threshold: float) -> bool:
        return self.flagged > 0 and self.share > threshold


def _pairs(conversation: Conversation) -> list[tuple[str, str]]:
    """(user turn, assistant turn) for every assistant turn that answers a user turn."""
    out, last_user = [], None
    for message in conversation.messages:
        if message.role == "user":
            last_user = message.content
        elif message.role == "assistant" and last_user is not None:
            out.append((last_user, message.content))
    return out


def screen_conversations(conversations: Sequence[Conversation], lines: Sequence[int],
                         judge: str = "harm", batch_size: int = 512) -> ScreeningSummary:
    """Judge every (user, assistant) pair; a row is flagged when any of its pairs is harmful."""
    start = time.perf_counter()
    owners, prompts, replies = [], [], []
    for row, conversation in enumerate(conversations):
        for prompt, reply in _pairs(conversation):
            owners.append(row)
            prompts.append(prompt)
            replies.append(reply)
    scorer = get_judge(judge)
    flagged_rows: set[int] = set()
    for lo in range(0, len(prompts), batch_size):
        flags = scorer.harmful_flags(prompts[lo:lo + batch_size], replies[lo:lo + batch_size])
        flagged_rows |= {owners[lo + i] for i, harmful in enumerate(flags) if harmful}
    rows = len(conversations)
    flagged_lines = sorted(lines[r] for r in flagged_rows)
    return ScreeningSummary(judge=judge, rows=rows, flagged=len(flagged_rows),
                            share=len(flagged_rows) / rows if rows else 0.0,
                            first_lines=flagged_lines[:FIRST_LINES],
                            seconds=round(time.perf_counter() - start, 3))


def screen_file_bytes(data: bytes, source: str, judge: str = "harm") -> ScreeningSummary:
    """Screen a chat/Alpaca JSONL file (already validated; a bad line still raises)."""
    good, issues = collect_conversations(data, source)
    if issues:
        raise DatasetFormatError(source, issues)
    return screen_conversations([c for _, c in good], [n for n, _ in good], judge=judge)
