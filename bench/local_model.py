"""Benchmark of the `local` provider's model on this machine's CPU.

    uv run python bench/local_model.py [--tokens 128] [--runs 3] [--threads N]

Measures, each in a fresh subprocess so that nothing is cached in memory:
- the first load (converting the packaged GGUF into a temporary models folder) and a later load
  from that folder;
- greedy generation speed in tokens per second (after a warm-up; `--runs` runs of `--tokens` new
  tokens each, with stop tokens ignored so every run generates the same number) in bfloat16 and
  float32, at the thread count the provider uses (all cores but one) unless `--threads` is given.
Needs the `local` extra (scripts/run or scripts/test install it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m"
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def measure_load(models_dir: str) -> dict[str, Any]:
    started = time.perf_counter()
    from promptloop.providers import _local_model, local  # imports torch and transformers

    imported = time.perf_counter()
    gguf = local.gguf_path(local.BASE_MODELS[MODEL])
    loaded = _local_model.load(gguf, Path(models_dir) / MODEL)
    return {
        "import": imported - started,
        "seconds": time.perf_counter() - imported,
        "converted": loaded.converted,
    }


def measure_speed(
    models_dir: str, dtype: str, tokens: int, runs: int, threads: int
) -> dict[str, Any]:
    import torch

    from promptloop.providers import _local_model, local

    gguf = local.gguf_path(local.BASE_MODELS[MODEL])
    loaded = _local_model.load(
        gguf, Path(models_dir) / MODEL, dtype=_local_model.dtype_named(dtype), threads=threads
    )
    ids = _local_model.prompt_ids(loaded, PROMPT, None)
    model: Any = loaded.model
    inputs = torch.tensor([ids])

    def run(new_tokens: int) -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            out = model.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,  # the same work every run
                do_sample=False,
                pad_token_id=loaded.tokenizer.eos_token_id,
            )
        assert out.shape[1] - inputs.shape[1] == new_tokens
        return time.perf_counter() - started, time.process_time() - cpu

    run(16)  # warm-up
    timings = [run(tokens) for _ in range(runs)]
    rates = [tokens / wall for wall, _ in timings]
    return {
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "median": statistics.median(rates),
        "rates": rates,
        # CPU time per token: what the machine's other work cannot inflate much.
        "cpu_ms_per_token": statistics.median(1000 * cpu / tokens for _, cpu in timings),
    }


def child(args: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh Python process; returns its JSON answer."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"measurement {args} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: as the provider does")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        kind, models_dir, *rest = options.child
        if kind == "load":
            print(json.dumps(measure_load(models_dir)))
        else:
            dtype, tokens, runs, threads = rest
            print(
                json.dumps(measure_speed(models_dir, dtype, int(tokens), int(runs), int(threads)))
            )
        return

    from promptloop.providers import _local_model

    threads = options.threads or _local_model.default_threads()
    print(f"bf16 native on this CPU: {_local_model.bf16_supported()}; torch threads: {threads}")
    with tempfile.TemporaryDirectory(prefix="promptloop-bench-") as models_dir:
        first = child(["load", models_dir])
        cached = child(["load", models_dir])
        assert first["converted"] and not cached["converted"]
        speeds = [
            child(
                ["speed", models_dir, dtype, str(options.tokens), str(options.runs), str(threads)]
            )
            for dtype in ("bfloat16", "float32")
        ]
    print()
    rows = [
        ("import torch + transformers", f"{cached['import']:.1f} s"),
        ("first load (GGUF conversion + load)", f"{first['seconds']:.1f} s"),
        ("cached load (converted folder)", f"{cached['seconds']:.1f} s"),
    ]
    for speed in speeds:
        label = f"greedy {speed['dtype']}, {speed['threads']} thread(s)"
        rows.append((f"{label}, median of {options.runs}", f"{speed['median']:.1f} tok/s"))
        rows.append((f"{label}, CPU time", f"{speed['cpu_ms_per_token']:.0f} ms/token"))
    print(f"| {'measurement':<48} | {'value':>12} |")
    print(f"|{'-' * 50}|{'-' * 14}|")
    for label, value in rows:
        print(f"| {label:<48} | {value:>12} |")
    print()
    for speed in speeds:
        runs = ", ".join(f"{r:.1f}" for r in speed["rates"])
        print(f"{speed['dtype']}: {options.tokens} new tokens per run; tok/s per run: {runs}")
    print("Other processes on the machine lower tok/s; CPU time per token moves less.")


if __name__ == "__main__":
    main()
