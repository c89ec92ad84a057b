"""Fine-tuning overhead: promptloop's LoRA training loop against a minimal peft + transformers
loop written here, on the same data and settings, in the same process.

    uv run python bench/finetune.py [--steps 20] [--rounds 1] [--threads N] [--models-dir DIR]
                                    [--dtype auto|bfloat16|float32] [--random-weights]
    uv run python bench/finetune.py --quality 60

`--quality N` measures what training buys instead: N steps through promptloop, then the base
model and the adapter (served by the local provider, greedy) answer the 20 held-out examples,
scored by exact match of the JSON.

Data: the synthetic text-to-JSON extraction task of `promptloop.finetune.demo` (200 examples,
seed 0; 180 to train on, 20 held out). Settings: the default hyperparameters (LoRA r=8 on
q/k/v/o, AdamW at 2e-4, batches of 8) for `--steps` steps, in the dtype promptloop trains in
(`--dtype`, default "auto": float32 on a CPU, bfloat16 on a GPU that has it; each loop runs on
the GPU when torch sees one). Both loops tokenize the same way, shuffle with the same seed and
start from the same random state, so their losses should agree: the last lines say whether
they do (promptloop runs the output layer only where the loss needs it: a faster step, the
same loss up to rounding).

Speed is measured over the loop only, from the end of the first step (a warm-up) to the end of
the last: wall-clock steps per second, the median step's wall time, and CPU seconds per step
(other processes on the machine slow the first, and move the other two less). On a GPU a step
of this small model is bound by the CPU launching its kernels (some 13,000 operations, the same
number in both loops), so the CPU's hiccups move every figure: take several rounds there.
`--rounds 2` runs the pair twice (minimal, promptloop, minimal, promptloop) and keeps each
loop's best round. Memory is the process's resident peak (ru_maxrss) after each run: it only
grows, so the second run's figure covers both; on a GPU also the peak that torch allocated on it
during each run (max_memory_allocated, reset before each).
The base model is converted once into `--models-dir` (default `<data_dir>/models`). Needs the
`local` extra (scripts/run or scripts/test install it).

`--random-weights` trains both loops on SmolLM2-135M's architecture (its config.json and
tokenizer) with randomly initialised weights instead of the converted ones, written into a
temporary folder first: for a machine the 98 MB GGUF file cannot reach (the GPU machine of
the device tool takes 64 MiB of files). A step's time does not depend on the weights' values,
so the speed and memory figures hold; the losses are not the real model's. The model folder
under `--models-dir` then needs only config.json, the marker and the tokenizer's files.

Measured on one H200 (torch 2.11, transformers 5.17, peft 0.21; random weights, bfloat16,
100 steps, 5 rounds): minimal 4.94 to 5.20 steps/s, promptloop 4.70 to 5.28; best rounds
5.198 and 5.284 (-1.6% overhead); GPU peak 1149 MB minimal, 950 MB promptloop (its output
layer runs on the answer positions only). Round pairs varied from -7% to +11% (+17% in an
earlier run of 200 steps): the pace of the CPU that launches the kernels.
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptloop.finetune import Hyperparameters, Progress, train
from promptloop.finetune.demo import extraction_examples
from promptloop.finetune.lora import DTYPES, Example

MODEL = "smollm2-135m"


@dataclass
class Run:
    name: str
    stamps: list[tuple[float, float]]  # (wall, CPU) at the end of each step
    losses: list[float]
    total_s: float
    peak_mb: float
    gpu_peak_mb: float | None = None  # torch's allocation peak on the GPU during this run

    @property
    def steps_per_s(self) -> float:
        return (len(self.stamps) - 1) / (self.stamps[-1][0] - self.stamps[0][0])

    @property
    def median_s_per_step(self) -> float:
        """Less moved by a few slow steps (another process, a hiccup) than the mean."""
        return statistics.median(b[0] - a[0] for a, b in itertools.pairwise(self.stamps))

    @property
    def cpu_s_per_step(self) -> float:
        return (self.stamps[-1][1] - self.stamps[0][1]) / (len(self.stamps) - 1)


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stamp() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def gpu_peak_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def reset_gpu_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_promptloop(
    base_dir: Path, examples: list[Example], hp: Hyperparameters, threads: int | None
) -> Run:
    stamps: list[tuple[float, float]] = []
    losses: list[float] = []

    def progress(p: Progress) -> None:
        stamps.append(stamp())
        losses.append(p.loss)

    reset_gpu_peak()  # train() resets it too
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        train(
            base_dir,
            examples[:180],
            examples[180:],
            Path(scratch) / "adapter",
            hp,
            progress=progress,
            threads=threads,
        )
    total = time.perf_counter() - started
    return Run("promptloop", stamps, losses, total, rss_peak_mb(), gpu_peak_mb())


def run_minimal(
    base_dir: Path, examples: list[Example], hp: Hyperparameters, threads: int | None
) -> Run:
    """The least a LoRA loop needs: load, tokenize with the answer as the only labels, train."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptloop.finetune.lora import _torch_dtype
    from promptloop.providers import _local_model

    reset_gpu_peak()
    started = time.perf_counter()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads or _local_model.default_threads())
    torch.manual_seed(hp.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = _torch_dtype(hp.dtype, device)  # the same dtype as promptloop's, to compare loops
    tokenizer: Any = AutoTokenizer.from_pretrained(str(base_dir))
    model: Any = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    config = LoraConfig(
        r=hp.r,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        target_modules=list(hp.target_modules),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config).to(device)
    rows = []
    for example in examples[:180]:
        prompt = tokenizer.apply_chat_template(
            example.messages[:-1], add_generation_prompt=True, tokenize=False
        )
        whole = tokenizer.apply_chat_template(example.messages, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer = tokenizer(whole[len(prompt) :], add_special_tokens=False)["input_ids"]
        answer = answer[: answer.index(tokenizer.eos_token_id) + 1]
        rows.append((prompt_ids + answer, [-100] * len(prompt_ids) + answer))
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=hp.learning_rate
    )
    shuffler = random.Random(hp.seed)
    order: list[int] = []
    stamps: list[tuple[float, float]] = []
    losses: list[float] = []
    model.train()
    for _ in range(hp.max_steps or 1):
        if not order:
            order = list(range(len(rows)))
            shuffler.shuffle(order)
        picked, order = order[: hp.batch_size], order[hp.batch_size :]
        width = max(len(rows[i][0]) for i in picked)
        ids = torch.tensor([rows[i][0] + [0] * (width - len(rows[i][0])) for i in picked])
        labels = torch.tensor([rows[i][1] + [-100] * (width - len(rows[i][1])) for i in picked])
        mask = torch.tensor(
            [[1] * len(rows[i][0]) + [0] * (width - len(rows[i][0])) for i in picked]
        )
        inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        loss = model(**{k: v.to(device) for k, v in inputs.items()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        stamps.append(stamp())
    with tempfile.TemporaryDirectory() as scratch:
        model.save_pretrained(scratch)
    torch.set_num_threads(threads_before)
    total = time.perf_counter() - started
    return Run("minimal peft", stamps, losses, total, rss_peak_mb(), gpu_peak_mb())


def quality(base_dir: Path, steps: int, threads: int | None) -> None:
    import asyncio

    from promptloop.core.kernel import Parameters
    from promptloop.providers.base import ChatRequest, Credentials
    from promptloop.providers.local import LocalProvider

    examples = extraction_examples(200, seed=0)
    held_out = examples[180:]
    with tempfile.TemporaryDirectory() as scratch:
        adapter = Path(scratch) / "orders"
        result = train(
            base_dir,
            examples[:180],
            held_out,
            adapter,
            Hyperparameters(max_steps=steps),
            threads=threads,
        )
        provider = LocalProvider(models_dir=base_dir.parent, threads=threads)
        provider.register_adapter("orders", base=MODEL, adapter=adapter)

        async def answers(model: str) -> list[str]:
            outputs = []
            for example in held_out:
                request = ChatRequest(
                    model=model,
                    messages=example.messages[:-1],
                    parameters=Parameters(max_tokens=48),
                )
                outputs.append((await provider.complete(request, Credentials())).output.strip())
            return outputs

        scores = {}
        for model in (MODEL, "orders"):
            started = time.perf_counter()
            outputs = asyncio.run(answers(model))
            right = sum(
                o == e.messages[-1]["content"] for o, e in zip(outputs, held_out, strict=True)
            )
            scores[model] = (right, time.perf_counter() - started, outputs[0])
    print(
        f"trained {result.steps} steps of {Hyperparameters().batch_size} in {result.seconds:.0f} s "
        f"({result.dtype}); loss {result.losses[0]:.3f} -> {result.train_loss:.3f} "
        f"(mean of the last epoch's steps), held-out loss {result.held_out_loss:.3f}, "
        f"RSS peak {result.peak_memory_mb:.0f} MB"
    )
    for model, (right, seconds, first) in scores.items():
        print(
            f"{model:>14}: {right}/{len(held_out)} exact on the held-out examples ({seconds:.0f} s)"
        )
        print(f"{'':>14}  first answer: {first!r}")
    print(f"{'':>14}  expected:     {held_out[0].messages[-1]['content']!r}")


def base_folder(models_dir: Path | None, *, need_weights: bool = True) -> Path:
    """The converted model's folder; without `need_weights`, a folder holding its config and
    tokenizer (and no weights) will do, and no GGUF file is needed."""
    from promptloop.providers import _local_model, local

    if models_dir is None:
        from promptloop.settings import Settings

        models_dir = Settings().data_dir / "models"
    folder = models_dir / MODEL
    if need_weights or not (folder / "config.json").is_file():
        _local_model.ensure_converted(local.gguf_path(local.BASE_MODELS[MODEL]), folder)
    return folder


def random_weights_folder(source: Path, scratch: Path) -> Path:
    """A model folder like `source` (config, tokenizer, marker) whose weights are the
    architecture's random initialisation (seed 0), saved in bfloat16 as conversion saves them."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = scratch / MODEL
    folder.mkdir(parents=True)
    for file in source.iterdir():
        if file.is_file() and not file.name.endswith((".safetensors", ".bin")):
            shutil.copy2(file, folder / file.name)
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(str(source))
    make: Any = AutoModelForCausalLM.from_config  # untyped
    model: Any = make(config)
    model.to(torch.bfloat16).save_pretrained(str(folder))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores but one")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--quality", type=int, metavar="STEPS", help="see the module docstring")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="default: auto")
    parser.add_argument(
        "--random-weights", action="store_true", help="speed only: see the module docstring"
    )
    options = parser.parse_args()
    if options.steps < 2:
        parser.error("--steps must be at least 2 (the first step is a warm-up)")
    if options.quality and options.random_weights:
        parser.error("--quality needs the real weights")
    base_dir = base_folder(options.models_dir, need_weights=not options.random_weights)
    if options.quality:
        quality(base_dir, options.quality, options.threads)
        return
    if options.random_weights:
        with tempfile.TemporaryDirectory() as scratch:
            compare(random_weights_folder(base_dir, Path(scratch)), options)
    else:
        compare(base_dir, options)


def compare(base_dir: Path, options: argparse.Namespace) -> None:
    import torch

    from promptloop.finetune.lora import _torch_dtype

    device = "cuda" if torch.cuda.is_available() else "cpu"
    examples = extraction_examples(200, seed=0)
    hp = Hyperparameters(max_steps=options.steps, dtype=options.dtype)
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, torch {torch.__version__}"
    weights = "RANDOM weights (same architecture; speed only)" if options.random_weights else ""
    print(f"device: {where}; {weights or 'converted weights'}", flush=True)
    runs: dict[str, list[Run]] = {"minimal peft": [], "promptloop": []}
    for round_ in range(1, options.rounds + 1):
        for runner in (run_minimal, run_promptloop):
            done = runner(base_dir, examples, hp, options.threads)
            runs[done.name].append(done)
            gpu = "" if done.gpu_peak_mb is None else f", GPU peak {done.gpu_peak_mb:.0f} MB"
            print(
                f"round {round_} {done.name}: {done.steps_per_s:.3f} steps/s, median step "
                f"{done.median_s_per_step:.4f} s, {done.cpu_s_per_step:.3f} CPU s/step, "
                f"{done.total_s:.1f} s in all{gpu}",
                flush=True,
            )
    best = {name: max(rounds, key=lambda r: r.steps_per_s) for name, rounds in runs.items()}
    minimal, ours = best["minimal peft"], best["promptloop"]
    print()
    dtype = _torch_dtype(hp.dtype, device)
    print(f"{options.steps} steps of {hp.batch_size} examples (~67 tokens) in {dtype} on {device}")
    on_gpu = minimal.gpu_peak_mb is not None and ours.gpu_peak_mb is not None
    header = f"| {'loop':<12} | {'steps/s':>8} | {'s/step':>7} | {'median s':>8} |"
    header += f" {'CPU s/step':>10} | {'total s':>8} | {'last loss':>9} | {'RSS peak MB':>11} |"
    print(header + (f" {'GPU peak MB':>11} |" if on_gpu else ""))
    widths = (14, 10, 9, 10, 12, 10, 11, 13) + ((13,) if on_gpu else ())
    print("|" + "|".join("-" * n for n in widths) + "|")
    for run in (minimal, ours):
        print(
            f"| {run.name:<12} | {run.steps_per_s:>8.3f} | {1 / run.steps_per_s:>7.3f} | "
            f"{run.median_s_per_step:>8.4f} | {run.cpu_s_per_step:>10.3f} | "
            f"{run.total_s:>8.1f} | {run.losses[-1]:>9.4f} | "
            f"{run.peak_mb:>11.0f} |" + (f" {run.gpu_peak_mb:>11.0f} |" if on_gpu else "")
        )
    wall = minimal.steps_per_s / ours.steps_per_s - 1
    cpu = ours.cpu_s_per_step / minimal.cpu_s_per_step - 1
    print()
    median = ours.median_s_per_step / minimal.median_s_per_step - 1
    print(
        f"promptloop overhead: {wall:+.1%} wall time per step, {cpu:+.1%} CPU time per step "
        f"({median:+.1%} median step time)"
    )
    print(f"(target: at most +10%): {'met' if max(wall, cpu) <= 0.10 else 'NOT met'}")
    # promptloop computes the same loss with fewer products: equal up to rounding.
    same = all(abs(a - b) < 1e-2 * a for a, b in zip(minimal.losses, ours.losses, strict=True))
    print(f"same losses step by step (within 1%): {'yes' if same else 'no'}")


if __name__ == "__main__":
    main()
