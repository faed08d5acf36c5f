"""The job pipeline: policies, mixing, and `run` end to end on the real default model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buckle.data import Conversation, load_conversations
from buckle.errors import DatasetFormatError, UnknownNameError
from buckle.pipeline import POLICIES, JobCancelled, JobSpec, get_policy, mix, run

TINY_TRAIN = {"n_epochs": 1, "batch_size": 4, "max_seq_len": 512, "lora_r": 4, "lora_alpha": 8}


def _convs(n: int, tag: str) -> list[Conversation]:
    return [Conversation.from_pair(f"{tag} question {i}?", f"{tag} answer {i}.") for i in range(n)]


# ---------------------------------------------------------------------- pure policy logic
@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5])
def test_during_mix_really_contains_the_ratio_of_curated_items(ratio):
    customer, curated = _convs(40, "customer"), _convs(30, "curated")
    stages = get_policy("during").stages(customer, curated, ratio=ratio, seed=1)
    assert len(stages) == 1
    items = stages[0].conversations
    n_cur = sum(c.prompt.startswith("curated") for c in items)
    assert n_cur == stages[0].safety_items == round(ratio / (1 - ratio) * 40)
    assert n_cur / len(items) == pytest.approx(ratio, abs=0.02)
    assert sum(c.prompt.startswith("customer") for c in items) == 40  # nothing dropped
    assert len({c.prompt for c in items if c.prompt.startswith("curated")}) == min(n_cur, 30)


def test_mix_cycles_a_small_corpus_and_is_seeded():
    customer, curated = _convs(30, "customer"), _convs(4, "curated")
    mixed, n = mix(customer, curated, 0.5, seed=3)
    assert n == 30 and sum(c.prompt.startswith("curated") for c in mixed) == 30
    assert mix(customer, curated, 0.5, seed=3)[0] == mixed
    assert mix(customer, curated, 0.5, seed=4)[0] != mixed


def test_mix_gives_each_corpus_part_its_share():
    """16 items from a corpus of 83 declines + 160 answers: 5 declines and 11 answers, whatever
    the seed (a random draw gave 8 + 8 with seed 0)."""
    customer = _convs(48, "customer")
    safety = _convs(83, "decline") + _convs(160, "answer")
    for seed in range(5):
        mixed, n = mix(customer, safety, 0.25, seed=seed, strata=[83, 160])
        assert n == 16 and len(mixed) == 64
        assert sum(c.prompt.startswith("decline") for c in mixed) == 5
        assert sum(c.prompt.startswith("answer") for c in mixed) == 11
    # a part smaller than its share is cycled, never replaced by the other part's items
    mixed, _ = mix(_convs(30, "customer"), _convs(2, "decline") + _convs(2, "answer"), 0.5,
                   seed=0, strata=[2, 2])
    assert sum(c.prompt.startswith("decline") for c in mixed) == 15
    with pytest.raises(ValueError, match="do not add up"):
        mix(customer, safety, 0.25, seed=0, strata=[83, 100])


def test_safety_stages_take_the_policy_dose_unless_the_job_sets_one():
    from buckle.pipeline.doses import safety_stage_config
    from buckle.pipeline.policies import get_policy
    from buckle.pipeline.spec import SafetySpec
    from buckle.training import TrainingConfig

    customer = TrainingConfig(n_epochs=3, learning_rate=2e-4)
    post = safety_stage_config(customer, get_policy("post"), SafetySpec(policy="post"))
    assert (post.n_epochs, post.learning_rate) == (1, pytest.approx(1e-4))
    pre = safety_stage_config(customer, get_policy("pre"), SafetySpec(policy="pre"))
    assert (pre.n_epochs, pre.learning_rate) == (3, pytest.approx(5e-4))
    auto = safety_stage_config(customer, get_policy("auto"), SafetySpec(policy="auto"))
    assert (auto.n_epochs, auto.learning_rate) == (1, pytest.approx(1e-4))
    own = safety_stage_config(customer, get_policy("post"), SafetySpec(
        policy="post", safety_epochs=4, safety_learning_rate=3e-4))
    assert (own.n_epochs, own.learning_rate) == (4, 3e-4)
    assert customer.n_epochs == 3  # not changed in place


def test_restore_share_draws_each_part_at_its_share_and_auto_rounds_draw_afresh():
    from buckle.pipeline.policies import AutoPolicy

    customer = _convs(5, "customer")
    safety = _convs(30, "decline") + _convs(60, "anchor")  # two parts, 1 : 2
    full = get_policy("post").stages(customer, safety, ratio=0.25, seed=0, strata=[30, 60])
    assert full[1].conversations == tuple(safety) and full[1].safety_items == 90
    half = get_policy("post").stages(customer, safety, ratio=0.25, seed=0, strata=[30, 60],
                                     restore_share=0.5)[1]
    items = half.conversations
    assert half.safety_items == len(items) == 45 and len(set(items)) == 45  # no repeats
    assert sum(c.prompt.startswith("decline") for c in items) == 15  # the corpus's 1 : 2
    r1 = AutoPolicy.restore_stage(safety, 1, share=0.5, seed=0, strata=[30, 60])
    r2 = AutoPolicy.restore_stage(safety, 2, share=0.5, seed=0, strata=[30, 60])
    assert len(r1.conversations) == 45 and r1.conversations != r2.conversations
    assert AutoPolicy.restore_stage(safety, 1, share=0.5, seed=0,
                                    strata=[30, 60]).conversations == r1.conversations
    with pytest.raises(ValueError, match="restore share"):
        get_policy("post").stages(customer, safety, ratio=0.25, seed=0, restore_share=0)


def test_policies_order_their_stages():
    customer, safety = _convs(5, "customer"), _convs(3, "curated")
    names = {name: [s.name for s in get_policy(name).stages(customer, safety, ratio=0.25,
                                                               seed=0)]
             for name in POLICIES}
    assert names["none"] == ["customer"]
    assert names["pre"] == ["immunize", "customer"]
    assert names["post"] == ["customer", "restore"]
    assert names["during"] == names["auto"] == names["refusal-mix"] == names["uncurated"] == \
        ["mixed"]
    assert get_policy("refusal-mix").safety_data == "refusal"
    assert get_policy("uncurated").safety_data == "uncurated"
    with pytest.raises(UnknownNameError, match="safety policy"):
        get_policy("yolo")


# ---------------------------------------------------------------------- run()
@pytest.fixture(scope="module")
def customer_file(tmp_path_factory) -> Path:
    rows = load_conversations("harmful-qa", limit=3) + \
        load_conversations("chatterbot", offset=600, limit=5)
    path = tmp_path_factory.mktemp("job") / "customer.jsonl"
    path.write_text("".join(c.to_json() + "\n" for c in rows))
    return path


@pytest.fixture(scope="module")
def curated_file(tmp_path_factory) -> Path:
    rows = [Conversation.from_pair(c.prompt, c.response + " Stay safe and ask an expert if "
                                   "unsure.") for c in load_conversations("chatterbot",
                                                                          offset=700, limit=4)]
    path = tmp_path_factory.mktemp("corpus") / "curated.jsonl"
    path.write_text("".join(c.to_json() + "\n" for c in rows))
    return path


def _spec(work: Path, customer: Path, policy: str, **safety) -> JobSpec:
    return JobSpec(model="smollm2-135m-instruct", training_file=str(customer), work_dir=str(work),
                   hyperparameters=TINY_TRAIN, evaluate=False,
                   safety={"policy": policy, "eval_limit": 2, "benign_limit": 2, **safety})


@pytest.mark.parametrize("policy", ["none", "pre", "during", "post", "refusal-mix"])
def test_each_policy_releases_a_loadable_peft_adapter(default_model, customer_file,
                                                       curated_file, tmp_path, policy):
    from peft import PeftModel

    events = []
    spec = _spec(tmp_path, customer_file, policy, curated_file=str(curated_file))
    hp = spec.hyperparameters.model_copy(update={"n_epochs": 2})  # so 1 safety epoch shows
    result = run(spec.model_copy(update={"hyperparameters": hp}), progress=events.append)
    out = Path(result.adapter_dir)
    assert {"adapter_config.json", "adapter_model.safetensors", "buckle_job.json"} <= \
        set(result.adapter_sha256)
    job = json.loads((out / "buckle_job.json").read_text())
    assert job["policy"] == policy
    stage_names = [s["name"] for s in job["stages"]]
    assert stage_names == {"none": ["customer"], "pre": ["immunize", "customer"],
                           "during": ["mixed"], "post": ["customer", "restore"],
                           "refusal-mix": ["mixed"]}[policy]
    model = PeftModel.from_pretrained(default_model.model, str(out))
    try:
        assert any("lora_A" in n for n, _ in model.named_parameters())
    finally:
        model.unload()
    assert result.trained_tokens > 0
    for i, stage in enumerate(stage_names):  # the documented doses (policies.Dose)
        config = json.loads((tmp_path / "train" / f"{i}-{stage}" / "adapter" /
                             "training_config.json").read_text())
        assert config["n_epochs"] == {"immunize": 3, "restore": 1}.get(stage, 2)
        assert config["learning_rate"] == pytest.approx(
            hp.learning_rate * {"restore": 0.5, "immunize": 2.5}.get(stage, 1.0))
        # a corpus file has no decline part: `post`'s unlikelihood dose cannot apply, and is off
        assert config["unlikelihood"] is None
    assert result.safety["dose"]["safety_epochs"] == {"pre": 3, "post": 1}.get(policy, 2)
    # `pre`'s documented objective: Booster with the plasticity term at weight 1
    assert (result.safety["dose"]["immunize"], result.safety["dose"]["immunize_plasticity"]) == \
        (("booster", 1.0) if policy == "pre" else (None, 0))
    assert result.safety["dose"]["unlikelihood"] == 0.0
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert events[-1].stage == "done"


def test_bad_customer_file_is_refused_before_any_training(customer_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(customer_file.read_text() + '{"messages": [{"role": "user"}]}\nnot json\n')
    work = tmp_path / "work"
    with pytest.raises(DatasetFormatError) as err:
        run(_spec(work, bad, "during"))
    assert [i.line for i in err.value.issues] == [9, 10]
    assert not (work / "train").exists() and not (work / "output").exists()


def test_cancel_stops_the_job_and_keeps_nothing_released(customer_file, curated_file,
                                                          tmp_path):
    seen = []

    def cancel_once_training() -> bool:
        return any(e.stage == "train" for e in seen)

    with pytest.raises(JobCancelled):
        run(_spec(tmp_path, customer_file, "during", curated_file=str(curated_file)),
            progress=seen.append, should_cancel=cancel_once_training)
    assert not (tmp_path / "output").exists()


def test_a_cancelled_job_resumes_from_its_checkpoint_when_run_again(customer_file, curated_file,
                                                                     tmp_path):
    spec = _spec(tmp_path, customer_file, "during", curated_file=str(curated_file))
    seen = []
    with pytest.raises(JobCancelled):
        run(spec, progress=seen.append,
            should_cancel=lambda: any(e.stage == "train" for e in seen))
    saved = sorted((tmp_path / "train").glob("*/checkpoints/step-*"))
    assert saved, "cancelling must leave a checkpoint to resume from"
    events = []
    result = run(spec, progress=events.append)
    first_step = next(e.data["step"] for e in events if e.stage == "train")
    assert first_step > 1, "the second run started over instead of resuming"
    assert Path(result.adapter_dir, "adapter_model.safetensors").is_file()


TINY_CURATION = {"source": "chatterbot", "limit": 2, "offset": 300, "preset": "quick",
                 "overrides": {"rounds": 1, "max_new_tokens": 32, "temperatures": [0.9],
                               "top_ps": [1.0]}}


def test_uncurated_control_mixes_the_same_items_before_curation(customer_file, tmp_path):
    result = run(_spec(tmp_path, customer_file, "uncurated", curated_ratio=0.2,
                       curation=TINY_CURATION))
    job = json.loads(Path(result.adapter_dir, "buckle_job.json").read_text())
    assert job["corpus"]["kind"] == "uncurated" and job["corpus"]["items"] == 2
    assert job["stages"] == [{"name": "mixed", "items": 8 + 2, "safety_items": 2}]
    assert result.safety["corpus"]["source"] == "chatterbot"


def test_auto_evaluates_base_and_adapter_and_records_its_rounds(customer_file, curated_file,
                                                                 tmp_path):
    spec = _spec(tmp_path, customer_file, "auto", curated_file=str(curated_file), max_asr=0.5)
    result = run(spec)
    s = result.safety
    assert s["policy"] == "auto" and s["base"]["n"] == 2 and s["adapter"]["n"] == 2
    assert s["rounds"][0]["stage"] == "during"
    for r in s["rounds"][1:]:
        assert r["stage"].startswith("restore-")
    last = s["rounds"][-1]
    assert last["asr"] - last["base_asr"] <= 0.5 or len(s["rounds"]) == 1 + 3
    report = json.loads(Path(result.report_path).read_text())
    assert report["n"] == 2 and report["adapter"]


def test_every_checkpoint_is_reported_with_its_global_step_across_stages_and_resumes(
        customer_file, curated_file, tmp_path):
    """`post` = customer (8 rows, batch 4, 3 epochs: 6 steps) then restore (4 rows: 3 steps),
    a checkpoint every 2 steps. Cancelled after its 3rd step, then resumed: the union of the
    reported checkpoints is every resumable state, by global step, with the right step."""
    spec = _spec(tmp_path, customer_file, "post", curated_file=str(curated_file),
                 safety_epochs=3)  # the job's own dose wins over the policy's (1 epoch)
    spec = spec.model_copy(update={
        "checkpoint_every": 2,
        "hyperparameters": spec.hyperparameters.model_copy(update={"n_epochs": 3})})
    first: list = []
    with pytest.raises(JobCancelled):
        run(spec, progress=first.append,
            should_cancel=lambda: sum(e.stage == "train" for e in first) >= 3)
    second: list = []
    result = run(spec, progress=second.append)
    reported = [e for e in first + second if e.stage == "checkpoint"]
    for e in reported:  # the message names the same step as the data and the folder
        assert e.message.endswith(f"checkpoint at step {e.data['stage_step']}"), e
        assert e.data["step"] == e.data["stage_step"] + (6 if e.data["stage"] == "restore"
                                                          else 0)
    steps = {e.data["step"] for e in reported}
    assert steps == {2, 3, 4, 6, 8, 9}  # 3: saved by the cancel; 6 and 9: stage adapters
    assert [c["step"] for c in result.checkpoints] == [3, 4, 6, 8, 9]  # this run: from 3 on
    resumed = next(e for e in second if e.stage == "checkpoint")
    assert resumed.data["step"] == 3  # the resume reports the checkpoint it starts from


def test_utility_is_decoded_in_the_evaluation_precision_and_cached_per_dtype(default_model,
                                                                             tmp_path):
    from buckle.pipeline.evaluation import Models, utility_cached

    validation = [Conversation.model_validate({"messages": [
        {"role": "user", "content": f"Reply with the number {i} and nothing else."},
        {"role": "assistant", "content": str(i)}]}) for i in range(2)]
    events: list[str] = []

    class Events:
        def __call__(self, stage: str, message: str, *a: object, **k: object) -> None:
            events.append(message)

        def check(self, where: str) -> None:
            pass

    models = Models(default_model)
    fp32 = utility_cached(models, None, validation, "fp32", tmp_path, Events())
    assert utility_cached(models, None, validation, "fp32", tmp_path, Events()) == fp32
    assert len(events) == 1  # the second fp32 call was a cache hit
    bf16 = utility_cached(models, None, validation, "bf16", tmp_path, Events())
    assert len(events) == 2  # another decode dtype is measured, never served from fp32's file
    assert len(list(tmp_path.glob("utility-*.json"))) == 2
    assert bf16["n"] == fp32["n"] == 2
