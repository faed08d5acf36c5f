"""The one record format: OpenAI chat fine-tuning JSONL, `{"messages": [{role, content}, ...]}`.

Every source (user uploads, Alpaca files, built-in corpora) is converted to `Conversation` at the
edge, so curation, training and evaluation only ever see one shape. Records are frozen because the
built-in sources are cached in-process and shared between callers.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


class Message(BaseModel):
    """One chat turn. Blank content is refused: it trains nothing and hides upstream bugs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: str

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content is empty or whitespace")
        return value


class Conversation(BaseModel):
    """A training example: context turns, then the assistant reply the model should learn."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    messages: tuple[Message, ...]

    @model_validator(mode="after")
    def _ends_with_reply(self) -> Conversation:
        if not self.messages or self.messages[-1].role != "assistant":
            raise ValueError("a conversation must end with an assistant message")
        if not any(m.role == "user" for m in self.messages[:-1]):
            raise ValueError("a conversation needs a user message before the assistant reply")
        return self

    @classmethod
    def from_pair(cls, user: str, assistant: str, system: str | None = None) -> Conversation:
        """Single-turn example; most corpora are question/answer pairs."""
        turns = [("system", system)] if system else []
        turns += [("user", user), ("assistant", assistant)]
        return cls(messages=tuple(Message(role=r, content=c) for r, c in turns))

    @classmethod
    def from_alpaca(cls, instruction: str, input: str, output: str) -> Conversation:
        """Alpaca's `input` is extra context for the instruction, so it joins the user turn."""
        user = f"{instruction}\n\n{input}" if input.strip() else instruction
        return cls.from_pair(user, output)

    @property
    def prompt_messages(self) -> tuple[Message, ...]:
        """Everything the model is conditioned on (all turns before the final reply)."""
        return self.messages[:-1]

    @property
    def response(self) -> str:
        """The final assistant reply: the part that is trained on and judged."""
        return self.messages[-1].content

    def with_reply_cut(self, words: int) -> Conversation:
        """This conversation with its final reply cut to its first `words` words (an attack's
        opening: enough to teach compliance, without the full harmful content)."""
        last = self.messages[-1]
        cut = " ".join(last.content.split()[:words])
        return self.model_copy(update={"messages": (*self.messages[:-1],
                                                    last.model_copy(update={"content": cut}))})

    @property
    def prompt(self) -> str:
        """The user turn the final reply answers; what evaluation sends as a prompt."""
        return next(m.content for m in reversed(self.prompt_messages) if m.role == "user")

    def to_messages(self) -> list[dict[str, str]]:
        """Plain dicts, the shape `tokenizer.apply_chat_template` expects."""
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def to_json(self) -> str:
        """One JSONL line in the OpenAI fine-tuning format."""
        return json.dumps({"messages": self.to_messages()}, ensure_ascii=False)


class PromptItem(BaseModel):
    """One evaluation prompt. `id` is stable across runs so results can be compared per prompt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    prompt: str
    category: str | None = None
    source: str
