"""The dataset layer: one record format, validated file parsing, and named sources."""

from buckle.data.records import ROLES, Conversation, Message, PromptItem
from buckle.data.sources import (
    FILE_SPECS,
    conversation_sources,
    list_sources,
    load_conversations,
    load_prompts,
)
from buckle.data.validation import (
    DataFileNotFoundError,
    check_token_lengths,
    count_chat_tokens,
    load_conversations_jsonl,
    load_prompts_jsonl,
    parse_conversation_lines,
    parse_prompt_lines,
)

__all__ = [
    "FILE_SPECS",
    "ROLES",
    "Conversation",
    "DataFileNotFoundError",
    "Message",
    "PromptItem",
    "check_token_lengths",
    "conversation_sources",
    "count_chat_tokens",
    "list_sources",
    "load_conversations",
    "load_conversations_jsonl",
    "load_prompts",
    "load_prompts_jsonl",
    "parse_conversation_lines",
    "parse_prompt_lines",
]
