"""train_lora on the real default model: learning, reproducibility, checkpoints, kill/resume,
cancellation, continuing from an adapter, and leaving the caller's base model as it was.

Kept small (4 short conversations, 2 per step, 2 epochs = 4 optimizer steps) so the file runs in
a few minutes on 2 CPU cores. Dropout stays on so resuming must restore the RNG stream too.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from buckle.data import Conversation, load_conversations
from buckle.errors import DatasetFormatError
from buckle.models import load_model
from buckle.training import (
    AdapterMismatchError,
    RunMismatchError,
    TrainingCancelled,
    TrainingConfig,
    encode_conversation,
    train_lora,
)
from buckle.training import trainer
from buckle.training.checkpoint import list_checkpoints

MODEL = "smollm2-135m-instruct"
CONFIG = TrainingConfig(n_epochs=2, batch_size=2, learning_rate=2e-3, lora_dropout=0.05,
                        max_seq_len=128, checkpoint_every=1, keep_checkpoints=2, seed=0)
TOTAL_STEPS = 4

CHILD = r"""
import sys, time
import torch
torch.set_num_threads(1)  # as the parent (see `one_thread`), so both do the same arithmetic
from buckle.data import load_conversations
from buckle.models import load_model
from buckle.training import TrainingConfig, train_lora
out, config = sys.argv[1], TrainingConfig.from_json(sys.argv[2])
base = load_model("smollm2-135m-instruct")
# the pause after each step leaves the parent time to kill us between checkpoints
train_lora(base, load_conversations("chatterbot", limit=4), config, out,
           progress=lambda p: time.sleep(1.5))
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Train on one intra-op thread in this module.

    On a 2-core machine shared with other test or benchmark processes, two OpenMP threads that
    wait for each other at every op ran these steps ~10x slower than one thread (measured);
    what is tested does not depend on the thread count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def conversations() -> list[Conversation]:
    return load_conversations("chatterbot", limit=4)


def _fingerprint_of_base(model) -> dict:
    weights = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().numpy().tobytes())
    return {"weights": weights.hexdigest(),
            "modules": sorted({type(m).__name__ for m in model.modules()}),
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "training": model.training, "peft": hasattr(model, "peft_config")}


@pytest.fixture(scope="module")
def reference(one_thread, default_model, conversations, tmp_path_factory):
    """One uninterrupted run; everything else is compared with it."""
    before = _fingerprint_of_base(default_model.model)
    events = []
    result = train_lora(default_model, conversations, CONFIG, tmp_path_factory.mktemp("ref"),
                        progress=events.append)
    return {"result": result, "events": events, "base_before": before}


def _weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))


def _assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=1e-5, msg=key)


@torch.no_grad()
def _mean_reply_nll(model, tokenizer, conversations) -> float:
    total, count = 0.0, 0
    for conv in conversations:
        enc = encode_conversation(tokenizer, conv.to_messages())
        ids = torch.tensor([enc.input_ids])
        logits = model(input_ids=ids).logits[0, :-1]
        scored = torch.tensor(enc.labels[1:])
        total += float(F.cross_entropy(logits[scored], ids[0, 1:][scored], reduction="sum"))
        count += int(scored.sum())
    return total / count


# ------------------------------------------------------------------ the finished run

def test_run_reports_progress_every_step_and_writes_a_peft_adapter(reference):
    result, events = reference["result"], reference["events"]
    assert result.steps == TOTAL_STEPS and len(result.losses) == TOTAL_STEPS
    assert [e.step for e in events] == [1, 2, 3, 4]
    assert [e.epoch for e in events] == [1, 1, 2, 2]
    assert all(e.total_steps == TOTAL_STEPS and e.tokens_per_s > 0 for e in events)
    assert events[-1].eta_s == 0 and events[0].eta_s > 0
    assert result.trained_tokens < result.useful_tokens <= result.padded_tokens
    files = {p.name for p in result.adapter_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "training_config.json"} <= files
    saved = TrainingConfig.model_validate_json((result.adapter_dir / "training_config.json")
                                               .read_text())
    assert saved == CONFIG


def test_only_the_newest_checkpoints_are_kept_and_each_is_a_complete_adapter(reference):
    ckpts = reference["result"].checkpoints
    assert [p.name for p in ckpts] == ["step-000002", "step-000003"]  # final step -> the adapter
    for ckpt in ckpts:
        assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt",
                "trainer_state.json", "training_config.json"} <= {p.name for p in ckpt.iterdir()}
    assert not [p for p in ckpts[0].parent.iterdir() if p.name.startswith(".")]


def test_training_lowers_loss_and_the_adapter_loads_with_peft_as_is(reference, conversations):
    from peft import PeftModel

    fresh = load_model(MODEL)
    before = _mean_reply_nll(fresh.model, fresh.tokenizer, conversations)
    probe = fresh.tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}],
                                                add_generation_prompt=True, return_tensors="pt")
    probe = probe["input_ids"] if hasattr(probe, "keys") else probe
    with torch.no_grad():
        base_logits = fresh.model(input_ids=probe).logits
    tuned = PeftModel.from_pretrained(fresh.model, str(reference["result"].adapter_dir)).eval()
    after = _mean_reply_nll(tuned, fresh.tokenizer, conversations)
    with torch.no_grad():
        tuned_logits = tuned(input_ids=probe).logits
    assert after < before - 0.3, (before, after)
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-3)


def test_base_model_is_left_exactly_as_it_was(reference, default_model):
    assert _fingerprint_of_base(default_model.model) == reference["base_before"]


def test_same_seed_gives_the_same_weights(reference, default_model, conversations, tmp_path):
    again = train_lora(default_model, conversations, CONFIG, tmp_path)
    assert again.losses == reference["result"].losses
    _assert_same_weights(again.adapter_dir, reference["result"].adapter_dir, atol=0)


def test_finished_run_is_returned_without_training_again(reference, default_model,
                                                         conversations):
    out = reference["result"].adapter_dir.parent
    t0 = time.perf_counter()
    again = train_lora(default_model, conversations, CONFIG, out)
    assert again.reused and time.perf_counter() - t0 < 5
    assert again.losses == reference["result"].losses
    with pytest.raises(RunMismatchError, match="fingerprint"):
        train_lora(default_model, conversations, CONFIG.model_copy(update={"seed": 1}), out)


# ------------------------------------------------------------------ interruption

def test_cancel_stops_within_one_step_and_resume_matches_the_uninterrupted_run(
        reference, default_model, conversations, tmp_path):
    config = CONFIG.model_copy(update={"checkpoint_every": 3})  # step 2 is saved by the cancel
    seen: list[int] = []
    with pytest.raises(TrainingCancelled) as err:
        train_lora(default_model, conversations, config, tmp_path,
                   progress=lambda p: seen.append(p.step), should_cancel=lambda: len(seen) >= 2)
    assert seen == [1, 2] and err.value.step == 2
    assert err.value.checkpoint is not None and err.value.checkpoint.name == "step-000002"
    assert not (tmp_path / "adapter").exists()
    # what a kill during the next checkpoint write leaves behind: ignored, then removed
    partial = tmp_path / "checkpoints" / ".tmp-step-000003-12345"
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(b"half a file")

    resumed = train_lora(default_model, conversations, config, tmp_path)
    assert resumed.resumed_from_step == 2 and resumed.steps == TOTAL_STEPS
    assert not partial.exists()
    assert resumed.losses == pytest.approx(reference["result"].losses, abs=1e-6)
    _assert_same_weights(resumed.adapter_dir, reference["result"].adapter_dir)


def test_a_resumed_run_computes_in_the_dtype_its_first_part_chose(
        reference, default_model, conversations, tmp_path, monkeypatch):
    """`auto` is measured per host and could come out otherwise in the resuming process (a
    loaded machine, a new thread count): the checkpoint's recorded dtype decides, not it."""
    config = CONFIG.model_copy(update={"checkpoint_every": 3})
    seen: list[int] = []
    with pytest.raises(TrainingCancelled):
        train_lora(default_model, conversations, config, tmp_path,
                   progress=lambda p: seen.append(p.step), should_cancel=lambda: len(seen) >= 2)
    first_part_bf16 = trainer.cpu_prefers_bf16()
    state = json.loads((list_checkpoints(tmp_path)[-1] / "trainer_state.json").read_text())
    assert state["compute_dtype"] == ("bfloat16" if first_part_bf16 else "float32")

    monkeypatch.setattr(trainer, "cpu_prefers_bf16", lambda: not first_part_bf16)
    resumed = train_lora(default_model, conversations, config, tmp_path)
    assert resumed.resumed_from_step == 2
    assert resumed.losses == pytest.approx(reference["result"].losses, abs=1e-6)
    _assert_same_weights(resumed.adapter_dir, reference["result"].adapter_dir)


def test_run_killed_with_sigkill_resumes_to_the_same_weights(reference, default_model,
                                                             conversations, tmp_path):
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), CONFIG.to_json()])
    try:
        deadline = time.monotonic() + 600
        while not list_checkpoints(out) and child.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        assert child.poll() is None, "the child finished before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert not (out / "adapter").exists()
    killed_at = json.loads((list_checkpoints(out)[-1] / "trainer_state.json").read_text())["step"]

    resumed = train_lora(default_model, conversations, CONFIG, out)
    assert resumed.resumed_from_step == killed_at < TOTAL_STEPS
    assert resumed.losses == pytest.approx(reference["result"].losses, abs=1e-5)
    _assert_same_weights(resumed.adapter_dir, reference["result"].adapter_dir, atol=1e-5)


# ------------------------------------------------------------------ chaining stages

def test_init_adapter_continues_from_the_given_weights(reference, default_model,
                                                       conversations, tmp_path):
    start = reference["result"].adapter_dir
    # one step at a negligible learning rate: the result is the starting adapter, not a fresh one
    config = CONFIG.model_copy(update={"n_epochs": 1, "batch_size": 4, "learning_rate": 1e-9})
    cont = train_lora(default_model, conversations, config, tmp_path, init_adapter=start)
    assert cont.steps == 1
    _assert_same_weights(cont.adapter_dir, start, atol=1e-6)
    assert cont.losses[0] < reference["result"].losses[0]  # starts where the first run ended
    assert cont.fingerprint != train_fingerprint_without_init(default_model, conversations, config)


def train_fingerprint_without_init(base, conversations, config) -> str:
    from buckle.training import run_fingerprint

    return run_fingerprint(base, conversations, config, None)


def test_init_adapter_of_another_shape_is_refused(reference, default_model, conversations,
                                                  tmp_path):
    config = CONFIG.model_copy(update={"lora_r": 8, "lora_alpha": 16})
    with pytest.raises(AdapterMismatchError, match="r=16"):
        train_lora(default_model, conversations, config, tmp_path,
                   init_adapter=reference["result"].adapter_dir)
    assert not (tmp_path / "adapter").exists()


# ------------------------------------------------------------------ bad input

def test_bad_training_data_fails_before_any_training(default_model, tmp_path):
    too_long = Conversation.from_pair("tell me " * 100, "no")
    with pytest.raises(DatasetFormatError) as err:
        train_lora(default_model, [Conversation.from_pair("hi", "hello"), too_long], CONFIG,
                   tmp_path)
    assert [i.line for i in err.value.issues] == [2]
    with pytest.raises(ValueError, match="no conversations"):
        train_lora(default_model, [], CONFIG, tmp_path)
    assert not list_checkpoints(tmp_path) and not (tmp_path / "adapter").exists()
