"""The unlikelihood term (`UnlikelihoodConfig`, `buckle.training.loss`): it is
-log(1 - P(reply | prompt)) per pair, runs are refused without their pairs, it makes the avoided
reply less likely than plain SFT on the same data, runs without it keep their fingerprints, and
`post` with `safety.unlikelihood` trains only its restore stage with the anchors' prompts paired
with the model's decline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from buckle.data import Conversation, load_conversations
from buckle.training import PlasticityConfig, TrainingConfig, UnlikelihoodConfig, train_lora
from buckle.training.data import micro_batches, tokenize_conversations
from buckle.training.loss import reply_log_probs, summed_unlikelihood

DECLINE = "I'm sorry, but I can't help with that."
CONFIG = TrainingConfig(n_epochs=2, batch_size=2, learning_rate=2e-3, lora_r=4, lora_alpha=8,
                        max_seq_len=256, checkpoint_every=0, seed=5)


@pytest.fixture(scope="module")
def data():
    aligned = load_conversations("chatterbot", offset=600, limit=4)
    negatives = [Conversation.from_pair(c.prompt, DECLINE) for c in aligned]
    return aligned, negatives


def _decline_log_probs(model, negatives) -> torch.Tensor:
    """log P(decline | prompt) per pair, in the pairs' order (one pass each: a collated pass
    orders its rows by length)."""
    out = []
    for example in tokenize_conversations(model.tokenizer, negatives, 256):
        (batch,) = micro_batches([example], model.tokenizer.pad_token_id or 0, 4096)
        with torch.no_grad():
            out.append(reply_log_probs(model.model, batch, model.device))
    return torch.cat(out)


def test_the_term_is_minus_log_one_minus_p_of_each_reply(default_model, data, tmp_path):
    _, negatives = data
    log_p = _decline_log_probs(default_model, negatives)
    tok = default_model.tokenizer
    for row, pair in zip(log_p, negatives):  # one unbatched, unpadded pass per pair
        full = tokenize_conversations(tok, [pair], 256)[0]
        with torch.no_grad():
            logits = default_model.model(torch.tensor([full.input_ids])).logits[0]
        logits = logits.float().log_softmax(-1)
        scored = [i for i, on in enumerate(full.labels) if on]
        assert DECLINE in tok.decode([full.input_ids[i] for i in scored])
        expect = sum(logits[i - 1, full.input_ids[i]].item() for i in scored)
        assert row.item() == pytest.approx(expect, abs=1e-3)
    # the sum over a collated pass, where the decline is likely (an adapter taught it, so the
    # term is far from 0): -log(1 - p) summed over the pairs
    from buckle.models import load_model

    taught = train_lora(default_model, negatives, CONFIG.model_copy(
        update={"n_epochs": 4, "learning_rate": 5e-3}), tmp_path / "taught")
    model = load_model(default_model.name, adapter=taught.adapter_dir)
    log_p = _decline_log_probs(model, negatives)
    assert log_p.exp().min() > 0.05, log_p.exp()
    (batch,) = micro_batches(tokenize_conversations(tok, negatives, 256),
                             tok.pad_token_id or 0, 4096)
    with torch.no_grad():
        total = summed_unlikelihood(model.model, batch, model.device)
    expect = sum(-math.log(1 - math.exp(v)) for v in log_p.tolist())
    assert total.item() == pytest.approx(expect, rel=1e-3)


def test_unlikelihood_needs_its_pairs_and_plain_runs_refuse_them(default_model, data,
                                                                 tmp_path):
    aligned, negatives = data
    on = CONFIG.model_copy(update={"unlikelihood": UnlikelihoodConfig()})
    with pytest.raises(ValueError, match="unlikelihood"):
        train_lora(default_model, aligned, on, tmp_path / "a")
    with pytest.raises(ValueError, match="unlikelihood"):
        train_lora(default_model, aligned, CONFIG, tmp_path / "b", negatives=negatives)


@pytest.mark.parametrize("term", [UnlikelihoodConfig(weight=2.0), PlasticityConfig(weight=2.0)],
                         ids=["unlikelihood", "plasticity"])
def test_runs_without_the_term_keep_the_fingerprint_they_had_before_it_existed(term):
    """The hash of a config with every optional term off is the hash of its fields before
    those terms existed; turning one on changes it."""
    field_name = {UnlikelihoodConfig: "unlikelihood", PlasticityConfig: "plasticity"}[type(term)]
    dumped = CONFIG.model_dump(mode="json")
    assert field_name in dumped  # the field exists ...
    without = {k: v for k, v in dumped.items()
               if k not in {"checkpoint_every", "keep_checkpoints", "micro_batch_tokens",
                            "unlikelihood", "plasticity"}}
    import hashlib

    canonical = json.dumps(without, sort_keys=True, separators=(",", ":"))
    assert CONFIG.config_hash() == hashlib.sha256(canonical.encode()).hexdigest()  # ... unhashed
    on = CONFIG.model_copy(update={field_name: term})
    assert on.config_hash() != CONFIG.config_hash()


def test_the_term_makes_the_avoided_reply_less_likely_than_plain_sft(default_model, data,
                                                                     tmp_path):
    from buckle.models import load_model

    aligned, negatives = data
    plain = train_lora(default_model, aligned, CONFIG, tmp_path / "plain")
    on = CONFIG.model_copy(update={"unlikelihood": UnlikelihoodConfig(weight=1.0)})
    term = train_lora(default_model, aligned, on, tmp_path / "term", negatives=negatives)
    assert term.fingerprint != plain.fingerprint
    p_plain = _decline_log_probs(load_model(default_model.name, adapter=plain.adapter_dir),
                                 negatives)
    p_term = _decline_log_probs(load_model(default_model.name, adapter=term.adapter_dir),
                                negatives)
    assert (p_term < p_plain).all(), (p_term, p_plain)
    # the SFT loss itself is still learned (the term adds to the gradient, not the loss)
    assert term.final_loss < term.losses[0]


@pytest.mark.parametrize("weight,applied", [(0.5, 0.5), (None, 1.0), (0, None)])
def test_post_trains_only_its_restore_stage_with_the_term_at_its_documented_dose(
        tmp_path, weight, applied):
    """The job's weight wins, unset is `post`'s documented dose (1), 0 turns it off."""
    from buckle.pipeline import JobSpec, run

    customer = tmp_path / "customer.jsonl"
    customer.write_text("".join(c.to_json() + "\n" for c in
                                load_conversations("chatterbot", offset=600, limit=4)))
    safety = {"policy": "post", "eval_limit": 2, "benign_limit": 2, "unlikelihood": weight,
              "responsible": {"source": "harmful-qa", "offset": 64, "limit": 3,
                              "max_new_tokens": 24},
              "anchors": {"source": "everyday", "offset": 40, "limit": 3, "max_new_tokens": 24}}
    result = run(JobSpec(model="smollm2-135m-instruct", training_file=str(customer),
                         work_dir=str(tmp_path / "job"), evaluate=False, safety=safety,
                         hyperparameters={"n_epochs": 1, "batch_size": 4, "max_seq_len": 512,
                                          "lora_r": 4, "lora_alpha": 8}))
    train = Path(result.adapter_dir).parent / "train"
    configs = {stage: json.loads((train / stage / "adapter" / "training_config.json").read_text())
               for stage in ("0-customer", "1-restore")}
    assert configs["1-restore"]["unlikelihood"] == (applied and {"weight": applied})
    assert configs["0-customer"]["unlikelihood"] is None
    assert result.safety["dose"]["unlikelihood"] == (applied or 0)


def test_the_pairs_are_the_anchor_prompts_with_the_most_common_decline():
    from buckle.pipeline.safety_data import decline_negatives

    responsible = [Conversation.from_pair(f"harmful {i}", DECLINE if i != 1 else "No.")
                   for i in range(3)]
    anchors = [Conversation.from_pair(f"ordinary {i}", f"answer {i}") for i in range(2)]
    info = {"parts": {"responsible": {"items": 3}, "anchors": {"items": 2}}}
    pairs = decline_negatives(responsible + anchors, info)
    assert [(c.prompt, c.response) for c in pairs] == [("ordinary 0", DECLINE),
                                                        ("ordinary 1", DECLINE)]
    with pytest.raises(ValueError, match="'responsible'.*'anchors'"):
        decline_negatives(anchors, {"parts": {"anchors": {"items": 2}}})
