"""The trainer's losses over a collated pass: next-token NLL on the trained tokens, and the
sequence-level unlikelihood of a reply to avoid (`UnlikelihoodConfig`).

Both run the LM head on the scored positions only (a vocabulary of 150k makes the head the
largest activation of a pass), so they share `scored_logits`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from buckle.training.data import MicroBatch

# -log(1 - p) is capped where p rounds to 1, so one certain decline cannot give an infinite loss
MAX_LOG_P = -1e-4


def scored_logits(model: Any, batch: MicroBatch, device: torch.device) -> torch.Tensor:
    """Logits (fp32) at the batch's scored positions, in row-major order of `batch.scored`."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    body, head = causal_lm.get_decoder(), causal_lm.get_output_embeddings()
    ids = batch.input_ids.to(device, non_blocking=True)
    hidden = body(input_ids=ids, use_cache=False).last_hidden_state
    picked = hidden[:, :-1][batch.scored.to(device)]
    logits = head(picked).float()
    cap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if cap:  # Gemma 2 caps logits after the head
        logits = cap * torch.tanh(logits / cap)
    return logits


def summed_token_nll(model: Any, batch: MicroBatch, device: torch.device) -> torch.Tensor:
    """Sum of next-token NLL over the batch's assistant tokens."""
    return F.cross_entropy(scored_logits(model, batch, device), batch.targets.to(device),
                           reduction="sum")


def reply_log_probs(model: Any, batch: MicroBatch, device: torch.device) -> torch.Tensor:
    """log P(reply | prompt) per row: the sum of its scored tokens' log-probabilities."""
    token = -F.cross_entropy(scored_logits(model, batch, device), batch.targets.to(device),
                             reduction="none")
    rows = batch.scored.nonzero()[:, 0].to(device)
    return torch.zeros(batch.input_ids.shape[0], device=device).index_add(0, rows, token)


def summed_unlikelihood(model: Any, batch: MicroBatch, device: torch.device) -> torch.Tensor:
    """Sum over rows of -log(1 - P(reply | prompt)): near 0 where the reply is already
    unlikely, large where the model would give it."""
    log_p = reply_log_probs(model, batch, device).clamp(max=MAX_LOG_P)
    return -torch.log(-torch.expm1(log_p)).sum()
