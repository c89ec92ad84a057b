"""Fine-tuning: LoRA adapters for the local provider's models, trained on chat examples (from
logs, corrections or datasets), and exports for providers that fine-tune as a service. Nothing
here touches the database; importing it does not import torch (training does).

    from promptloop.finetune import Example, Hyperparameters, train
    from promptloop.finetune.demo import extraction_examples

    examples = extraction_examples(200)
    result = train(models_dir / "smollm2-135m", examples[:180], examples[180:], out_dir,
                   Hyperparameters(max_steps=60))
"""

from promptloop.finetune.lora import (
    Cancelled,
    Example,
    Hyperparameters,
    Progress,
    TrainResult,
    export_openai_jsonl,
    train,
)

__all__ = [
    "Cancelled",
    "Example",
    "Hyperparameters",
    "Progress",
    "TrainResult",
    "export_openai_jsonl",
    "train",
]
