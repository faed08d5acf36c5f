"""LoRA supervised fine-tuning: assistant-only loss, length-bucketed batches, exact resume.

    from buckle.training import TrainingConfig, train_lora
    result = train_lora(load_model("smollm2-135m-instruct"), conversations,
                        TrainingConfig(n_epochs=3), "runs/job-1")
    # result.adapter_dir loads with peft.PeftModel.from_pretrained or load_model(adapter=...)
"""

from buckle.training.config import (
    BoosterConfig,
    PlasticityConfig,
    TrainingConfig,
    UnlikelihoodConfig,
)
from buckle.training.data import (
    TokenizedConversation,
    encode_conversation,
    epoch_batches,
    tokenize_conversations,
)
from buckle.training.errors import AdapterMismatchError, RunMismatchError, TrainingCancelled
from buckle.training.lora import merged_adapter, stack_adapters
from buckle.training.trainer import (
    CancelCheck,
    ProgressCallback,
    TrainProgress,
    TrainResult,
    run_fingerprint,
    train_lora,
)

__all__ = [
    "AdapterMismatchError", "BoosterConfig", "CancelCheck", "PlasticityConfig", "ProgressCallback",
    "RunMismatchError", "TokenizedConversation", "TrainProgress", "TrainResult",
    "TrainingCancelled", "TrainingConfig", "UnlikelihoodConfig", "encode_conversation",
    "epoch_batches", "merged_adapter", "run_fingerprint", "stack_adapters",
    "tokenize_conversations", "train_lora",
]
