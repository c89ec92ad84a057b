"""LoRA fine-tuning of a local base model on chat examples, with a plain PyTorch loop.

    from promptloop.finetune import Example, Hyperparameters, train

    result = train(models_dir / "smollm2-135m", examples[:180], examples[180:], out_dir,
                   Hyperparameters(epochs=2), progress=print)
    local.provider.register_adapter("orders-1", base="smollm2-135m", adapter=result.adapter_dir)

Nothing here touches the database: callers pass examples and store the result. Importing this
module does not import torch (the server builds examples and exports without the `local` extra);
`train` does.

Decisions:
- Our own loop, not Hugging Face's Trainer: a fine-tune job needs every step (progress, and
  cancellation between steps), and bench/finetune.py measures the loop's overhead against a
  minimal one.
- The base model loads from the local provider's converted folder. Examples go through the
  chat template the provider renders prompts with, tokenized the same way, so the adapter
  learns on exactly the tokens it will be served.
- dtype "auto" trains in float32 on a CPU and in bfloat16 on a GPU that supports it. Not the
  provider's rule (bfloat16 where the CPU runs it natively): generation is bound by memory
  bandwidth, where bfloat16's half-size weights win, but training is bound by matrix
  products, and on an AVX512-BF16 CPU without AMX torch's bfloat16 products are slower than
  float32's (measured: a step 1.6 times as long, on 1 thread and on 2). The adapter serves on
  the bfloat16 base all the same: the float32 weights are that base's, upcast.
- The loss counts only the tokens of the last (assistant) message and its end-of-turn token, so
  the model learns the answer and to stop after it, not to repeat the prompts. The output
  layer (a 49k-word vocabulary: the biggest product of a step) runs only at those positions,
  about a third of them: 14% off a step, the same loss.
- Sequences longer than `max_length` lose their end; an example left with no answer token is
  skipped and counted in the metrics.
- Deterministic for a seed (on the CPU): the LoRA initialisation, the shuffling and the dropout
  all draw from it.
- The adapter is written into a temporary sibling folder that is renamed into place: `out_dir`
  holds a whole adapter or nothing. A cancelled run writes nothing.
"""

from __future__ import annotations

import json
import math
import random
import resource
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptloop.providers.local import ADAPTER_MANIFEST

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

IGNORED = -100  # the label that the loss skips
DTYPES = ("auto", "bfloat16", "float32")

__all__ = [
    "Cancelled",
    "Example",
    "Hyperparameters",
    "Progress",
    "TrainResult",
    "export_openai_jsonl",
    "train",
]


@dataclass(frozen=True)
class Hyperparameters:
    """How to train. `max_steps`, when set, replaces `epochs`: that many steps, going round the
    examples as often as needed. `dtype` "auto": float32 on a CPU, bfloat16 on a GPU (see the module)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    learning_rate: float = 2e-4
    batch_size: int = 8
    epochs: int = 3
    max_steps: int | None = None
    max_length: int = 256
    seed: int = 0
    dtype: str = "auto"

    def __post_init__(self) -> None:
        problems = [
            "r must be at least 1" if self.r < 1 else "",
            "alpha must be positive" if self.alpha <= 0 else "",
            "dropout must be in [0, 1)" if not 0 <= self.dropout < 1 else "",
            "target_modules must name at least one module" if not self.target_modules else "",
            "learning_rate must be positive" if self.learning_rate <= 0 else "",
            "batch_size must be at least 1" if self.batch_size < 1 else "",
            "epochs must be at least 1" if self.epochs < 1 else "",
            "max_steps must be at least 1"
            if self.max_steps is not None and self.max_steps < 1
            else "",
            "max_length must be at least 8" if self.max_length < 8 else "",
            f"dtype must be one of {', '.join(DTYPES)}" if self.dtype not in DTYPES else "",
        ]
        if any(problems):
            raise ValueError("; ".join(p for p in problems if p) + ".")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hyperparameters:
        """From `to_dict()`'s shape; unknown keys are a ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown hyperparameters: {', '.join(unknown)}.")
        values = dict(data)
        if "target_modules" in values:
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**values)


@dataclass
class Example:
    """One conversation to learn from: chat messages ending with the assistant's answer."""

    messages: list[dict[str, Any]]

    def __post_init__(self) -> None:
        if not self.messages or self.messages[-1].get("role") != "assistant":
            raise ValueError("An example's messages must end with the assistant's answer.")

    @classmethod
    def from_call(cls, messages: Sequence[dict[str, Any]], output: str) -> Example:
        """The example of a call: its rendered prompt messages, answered with `output` (the
        model's output, or a user's correction of it)."""
        return cls(messages=[*messages, {"role": "assistant", "content": output}])


@dataclass(frozen=True)
class Progress:
    """Reported after every step. `elapsed_s` counts from the call (loading included);
    `remaining_s` is the steps left at the loop's pace so far."""

    step: int
    total_steps: int
    loss: float
    elapsed_s: float
    remaining_s: float


@dataclass(frozen=True)
class TrainResult:
    """`train_loss` is the mean loss of the last epoch's worth of steps; `held_out_loss` the
    mean loss per answer token on the held-out examples after training (None without any);
    `peak_memory_mb` the process's resident memory peak (on a GPU, the peak it allocated)."""

    steps: int
    train_loss: float
    held_out_loss: float | None
    seconds: float
    peak_memory_mb: float
    adapter_dir: Path
    losses: list[float] = field(default_factory=list)  # one per step
    device: str = "cpu"
    dtype: str = "float32"


class Cancelled(Exception):
    """`should_stop()` turned true: training stopped before the next step; nothing was saved."""


def export_openai_jsonl(examples: Sequence[Example]) -> str:
    """The examples in OpenAI's chat fine-tuning format: one `{"messages": [...]}` per line."""
    lines = []
    for example in examples:
        messages = [
            {k: m[k] for k in ("role", "content", "name") if k in m} for m in example.messages
        ]
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def train(
    base_dir: Path,
    train: Sequence[Example],
    held_out: Sequence[Example],
    out_dir: Path,
    hp: Hyperparameters | None = None,
    *,
    name: str | None = None,
    base: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train a LoRA adapter for the converted model in `base_dir` and save it into `out_dir`
    (which must not exist yet, or be empty), with a `promptloop.json` naming the model (`name`,
    default the folder's name) and its base (`base`, default `base_dir`'s name) for
    `LocalProvider.load_adapters`. Uses the GPU when there is one. `threads`: torch's thread
    count on the CPU (default: all cores but one, as the local provider). Raises `Cancelled`
    when `should_stop()` turns true, ValueError for examples with nothing to learn."""
    import torch

    from promptloop.providers import _local_model

    started = time.perf_counter()
    hp = hp or Hyperparameters()
    if not train:
        raise ValueError("There are no training examples.")
    _check_empty(out_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = _torch_dtype(hp.dtype, device)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads or _local_model.default_threads())
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        torch.manual_seed(hp.seed)
        model, tokenizer = _local_model.load_converted(base_dir, dtype)
        rows = _tokenized(tokenizer, train, hp.max_length)
        held_rows = _tokenized(tokenizer, held_out, hp.max_length)
        if not rows:
            raise ValueError(
                f"No training example has an answer token within max_length={hp.max_length}."
            )
        lora = _lora_model(model, hp).to(device)
        pad = _pad_id(tokenizer)
        optimizer = torch.optim.AdamW(
            [p for p in lora.parameters() if p.requires_grad], lr=hp.learning_rate
        )
        per_epoch = math.ceil(len(rows) / hp.batch_size)
        total = hp.max_steps or hp.epochs * per_epoch
        batches = _batches(len(rows), hp.batch_size, hp.seed)
        losses: list[float] = []
        lora.train()
        loop_started = time.perf_counter()
        for step in range(1, total + 1):
            if should_stop is not None and should_stop():
                raise Cancelled(f"Stopped after {step - 1} of {total} steps; nothing was saved.")
            batch = _collate([rows[i] for i in next(batches)], pad, device)
            loss = _answer_loss(lora, batch)
            loss.backward()  # type: ignore[no-untyped-call, unused-ignore]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if progress is not None:
                now = time.perf_counter()
                pace = (now - loop_started) / step
                progress(Progress(step, total, losses[-1], now - started, pace * (total - step)))
        held_out_loss = _mean_loss(lora, held_rows, hp.batch_size, pad, device)
        last_epoch = losses[-min(per_epoch, len(losses)) :]
        result = TrainResult(
            steps=total,
            train_loss=sum(last_epoch) / len(last_epoch),
            held_out_loss=held_out_loss,
            seconds=time.perf_counter() - started,
            peak_memory_mb=_peak_memory_mb(device),
            adapter_dir=out_dir,
            losses=losses,
            device=device,
            dtype=str(dtype).removeprefix("torch."),
        )
        manifest = {
            "model": name or out_dir.name,
            "base": base or base_dir.name,
            "method": "lora",
            "hyperparameters": hp.to_dict(),
            "examples": {
                "train": len(train),
                "held_out": len(held_out),
                "skipped": len(train) - len(rows) + len(held_out) - len(held_rows),
            },
            "metrics": {
                "steps": result.steps,
                "train_loss": result.train_loss,
                "held_out_loss": result.held_out_loss,
                "seconds": round(result.seconds, 2),
                "peak_memory_mb": round(result.peak_memory_mb, 1),
                "device": device,
                "dtype": result.dtype,
            },
        }
        _save(lora, manifest, out_dir)
        return result
    finally:
        torch.set_num_threads(threads_before)


# --- preparing examples -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    ids: list[int]
    labels: list[int]  # IGNORED outside the answer


def _tokenized(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], max_length: int
) -> list[_Row]:
    """Token ids and labels of the examples that keep an answer token within `max_length`."""
    from promptloop.providers._local_model import _eos_ids, _plain_message

    eos = _eos_ids(tokenizer)
    rows = []
    for example in examples:
        messages = [_plain_message(m) for m in example.messages]
        # The prompt exactly as the provider renders and encodes it, then the answer after it.
        prompt = str(
            tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
        )
        whole = str(tokenizer.apply_chat_template(messages, tokenize=False))
        if not whole.startswith(prompt):
            raise ValueError("The chat template does not render the answer after the prompt.")
        prompt_ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        answer_ids = list(tokenizer(whole[len(prompt) :], add_special_tokens=False)["input_ids"])
        ends = [i for i, token in enumerate(answer_ids) if token in eos]
        if ends:  # keep the end-of-turn token, drop what the template writes after it
            answer_ids = answer_ids[: ends[0] + 1]
        ids = (prompt_ids + answer_ids)[:max_length]
        labels = ([IGNORED] * len(prompt_ids) + answer_ids)[:max_length]
        if any(label != IGNORED for label in labels[1:]):
            rows.append(_Row(ids=[int(i) for i in ids], labels=[int(i) for i in labels]))
    return rows


def _batches(count: int, size: int, seed: int) -> Iterator[list[int]]:
    """Indices of each batch, endlessly: every epoch is a fresh shuffle."""
    shuffler = random.Random(seed)
    while True:
        order = list(range(count))
        shuffler.shuffle(order)
        for start in range(0, count, size):
            yield order[start : start + size]


def _collate(rows: list[_Row], pad: int, device: str) -> dict[str, torch.Tensor]:
    import torch

    width = max(len(row.ids) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORED, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row.ids)] = torch.tensor(row.ids)
        labels[i, : len(row.labels)] = torch.tensor(row.labels)
        mask[i, : len(row.ids)] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    from promptloop.providers._local_model import _pad_id as pad_id

    return pad_id(tokenizer) or 0  # padding is masked out: any id does


# --- the model --------------------------------------------------------------------------------


def _torch_dtype(name: str, device: str) -> torch.dtype:
    """float32 unless bfloat16 is asked for, or "auto" on a GPU that supports it (see the
    module's docstring); float16 is never used: it would need loss scaling."""
    import torch

    if name == "float32" or (name == "auto" and device == "cpu"):
        return torch.float32
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float32
    return torch.bfloat16


def _lora_model(model: Any, hp: Hyperparameters) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=hp.r,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        target_modules=list(hp.target_modules),
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # transformers' deprecation of a name peft still calls
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        return get_peft_model(model, config)


def _answer_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean cross-entropy of the answer tokens, as `model(**batch).loss` computes it, with
    the output layer run only where a token has a label."""
    import torch

    causal = model.get_base_model()  # peft's layers are inside it: its forward applies them
    hidden = causal.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    labels = batch["labels"][:, 1:]  # position t predicts token t + 1
    where = labels != IGNORED
    logits = causal.get_output_embeddings()(hidden[:, :-1][where])
    return torch.nn.functional.cross_entropy(logits.float(), labels[where])


def _mean_loss(model: Any, rows: list[_Row], size: int, pad: int, device: str) -> float | None:
    """The mean loss per answer token over `rows` (None without any)."""
    import torch

    if not rows:
        return None
    model.eval()
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(rows), size):
            batch = _collate(rows[start : start + size], pad, device)
            counted = int((batch["labels"][:, 1:] != IGNORED).sum())
            total += float(_answer_loss(model, batch)) * counted
            tokens += counted
    return total / tokens


def _peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes there, KiB here


# --- saving -----------------------------------------------------------------------------------


def _check_empty(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not an empty folder.")


def _save(model: Any, manifest: dict[str, Any], out_dir: Path) -> None:
    """The adapter and its manifest, appearing at once by renaming a finished folder."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(str(scratch))
        (scratch / ADAPTER_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _check_empty(out_dir)
        if out_dir.exists():
            out_dir.rmdir()
        scratch.rename(out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
