"""The torch side of the `local` provider: convert a GGUF model once, load it, apply LoRA
adapters to it, generate.

Imported only when a local model is first used (torch and transformers come with the `local`
extra), and only from the provider's worker thread or from tools that run without an event loop
(bench/local_model.py, tests). Everything here is blocking.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging as transformers_logging

Dtype = Literal["auto", "bfloat16", "float32"]
FinishReason = Literal["stop", "length"]

log = logging.getLogger("promptloop.local")
_MARKER = "promptloop-model.json"  # written last into a converted folder, before its rename
_CONVERTED_DTYPE = torch.bfloat16  # what the cache holds; a float32 load upcasts it


def dtype_named(name: str) -> Dtype:
    if name not in ("auto", "bfloat16", "float32"):
        raise ValueError(f"dtype must be auto, bfloat16 or float32, not {name!r}.")
    return cast(Dtype, name)


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 natively (AVX512-BF16 or AMX): there bf16 is as fast as
    float32 on one thread, faster on more, in half the memory; elsewhere it is emulated, slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve_dtype(dtype: Dtype) -> torch.dtype:
    if dtype == "float32" or (dtype == "auto" and not bf16_supported()):
        return torch.float32
    return torch.bfloat16


def default_threads() -> int:
    """Intra-op threads for generation: all cores but one, which stays free for the server's
    event loop and database work. On a 2-core machine that is 1: with 2, torch's OpenMP threads
    spin-wait for a core whenever anything else runs, and generation slows 10-30 fold."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


# --- conversion -------------------------------------------------------------------------------


def is_converted(folder: Path) -> bool:
    return (folder / _MARKER).is_file()


def ensure_converted(gguf: Path, folder: Path) -> bool:
    """Make `folder` hold the model in `gguf` as bf16 safetensors plus its tokenizer, unless it
    already does. Returns whether this call converted it.

    Two processes may start at once: a file lock beside the folder lets one convert while the
    other waits, and the result appears by an atomic rename of a finished temporary folder, so a
    folder with the marker file is always complete, even after a crash mid-conversion."""
    if is_converted(folder):
        return False
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(folder.parent / f".{folder.name}.lock") as exclusive:
        if is_converted(folder):  # another process converted it while we waited
            return False
        if exclusive:  # no one else is converting: temporary folders are crashes' leftovers
            for stale in folder.parent.glob(f".{folder.name}.*"):
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        log.warning("Converting %s into %s, once (about a minute).", gguf.name, folder)
        try:
            _convert(gguf, scratch)
            if folder.exists():  # a leftover without the marker (an older layout, a crash)
                shutil.rmtree(folder)
            scratch.rename(folder)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return True


def _convert(gguf: Path, out: Path) -> None:
    started = time.perf_counter()
    source, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name)
    # float32 is the fastest way to dequantize; the copy below casts to bf16.
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32)
    # save_pretrained refuses a model loaded from GGUF: build a plain one and move the weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    auto: Any = AutoModelForCausalLM  # from_config is untyped
    plain = auto.from_config(config, dtype=_CONVERTED_DTYPE)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker = {
        "source": name,
        "source_bytes": gguf.stat().st_size,
        "dtype": str(_CONVERTED_DTYPE).removeprefix("torch."),
        "converted_in_s": round(time.perf_counter() - started, 1),
    }
    (out / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    """An exclusive lock on `path` between processes; yields whether it really is exclusive."""
    with path.open("a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: the atomic rename alone keeps the folder whole
            yield False
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- loading ----------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model in memory with its tokenizer. Not thread-safe: callers run one generation at a
    time (the provider's single worker thread).

    A fine-tuned model is a view of its base: a copy of this record (same model, tokenizer and
    `lora`, the adapters loaded on that base) with `adapter` set to the LoRA adapter folder it
    applies."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    dtype: torch.dtype
    context_window: int
    load_seconds: float
    converted: bool  # whether loading it included the one-time conversion
    adapter: Path | None = None
    lora: Lora = field(default_factory=lambda: Lora())


def load(
    gguf: Path, folder: Path, *, dtype: Dtype = "auto", threads: int | None = None
) -> LoadedModel:
    """Convert on first use (about a minute), then load from the converted folder (seconds)."""
    started = time.perf_counter()
    torch.set_num_threads(threads or default_threads())
    torch_dtype = resolve_dtype(dtype)
    converted = ensure_converted(gguf, folder)  # shows progress: it happens once
    model, tokenizer = load_converted(folder, torch_dtype)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        dtype=torch_dtype,
        context_window=int(getattr(model.config, "max_position_embeddings", 2048)),
        load_seconds=time.perf_counter() - started,
        converted=converted,
    )


def load_converted(
    folder: Path, dtype: torch.dtype
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (in eval mode) and tokenizer of a converted folder (fine-tuning loads its base
    model here too)."""
    if not is_converted(folder):
        raise FileNotFoundError(f"{folder} holds no converted model ({_MARKER} is missing).")
    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    return model, tokenizer


# --- LoRA adapters ----------------------------------------------------------------------------

ADAPTERS_KEPT = 4  # adapters loaded at once on one base model; the least recently used goes


class Lora:
    """The LoRA adapters loaded on one base model.

    peft injects every adapter's layers into the base model's own modules, so the base and its
    adapters share one copy of the base weights and one adapter is active at a time; generation
    selects it (or disables them all, for the base model) under `lock`. An adapter is known by
    its folder and the time its weights were written, so a folder trained again loads again."""

    def __init__(self, capacity: int = ADAPTERS_KEPT) -> None:
        self.capacity = capacity
        self.lock = threading.RLock()
        self.peft: Any = None  # the PeftModel around the base model, made by the first adapter
        self.names: OrderedDict[tuple[Path, int], str] = OrderedDict()  # -> peft's adapter name
        self._made = 0

    def view(self, base: LoadedModel, folder: Path) -> LoadedModel:
        """`base` with the adapter in `folder`, loaded now unless it already is. Raises
        GenerationError when the folder is missing (503) or holds no usable adapter (500)."""
        self._name(base, folder)
        return replace(base, adapter=folder, load_seconds=0.0, converted=False)

    @contextlib.contextmanager
    def selected(self, loaded: LoadedModel) -> Iterator[Any]:
        """The model to run for `loaded`, with its adapter active (or none, for the base)."""
        with self.lock:
            if loaded.adapter is not None:
                self.peft.set_adapter(self._name(loaded, loaded.adapter), inference_mode=True)
                yield self.peft
            elif self.peft is not None:
                with self.peft.disable_adapter():
                    yield self.peft
            else:
                yield loaded.model

    def _name(self, base: LoadedModel, folder: Path) -> str:
        key = _adapter_key(folder)
        with self.lock:
            if key in self.names:
                self.names.move_to_end(key)
                return self.names[key]
            name = self._load(base, folder)
            self.names[key] = name
            self.peft.set_adapter(name, inference_mode=True)  # peft warns when the active goes
            while len(self.names) > self.capacity:  # the new one is loaded: never zero left
                _, evicted = self.names.popitem(last=False)
                self.peft.delete_adapter(evicted)
            return name

    def _load(self, base: LoadedModel, folder: Path) -> str:
        from peft import PeftConfig, PeftModel
        from peft.utils import load_peft_weights

        started = time.perf_counter()
        self._made += 1
        name = f"adapter{self._made}"  # peft's names become module keys: no dots, no slashes
        try:
            # Read both files before peft changes the model: most broken folders fail here.
            PeftConfig.from_pretrained(str(folder))
            load_peft_weights(str(folder), device="cpu")
            with _quiet(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
                if self.peft is None:
                    self.peft = PeftModel.from_pretrained(base.model, str(folder), name)
                else:
                    self.peft.load_adapter(str(folder), name)
        except Exception as exc:
            _remove_adapter(base.model if self.peft is None else self.peft, name)
            raise GenerationError(
                f"The LoRA adapter in {folder} could not be loaded ({type(exc).__name__}: "
                f"{exc}); train it again, or check that it was trained on this base model.",
                status=500,
                kind="adapter_error",
            ) from exc
        self.peft.eval()
        log.info("Loaded the LoRA adapter %s in %.1f s.", folder, time.perf_counter() - started)
        return name


def _remove_adapter(model: Any, name: str) -> None:
    """Take out what a failed load of adapter `name` left in the model's layers."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    with contextlib.suppress(Exception):
        if name in getattr(model, "peft_config", {}):  # a PeftModel that knows it
            model.delete_adapter(name)
            return
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            with contextlib.suppress(Exception):
                module.delete_adapter(name)


def _adapter_key(folder: Path) -> tuple[Path, int]:
    config = folder / "adapter_config.json"
    weights = [folder / "adapter_model.safetensors", folder / "adapter_model.bin"]
    found = next((w for w in weights if w.is_file()), None)
    if not config.is_file() or found is None:
        raise GenerationError(
            f"The LoRA adapter folder {folder} is missing or incomplete (it needs "
            "adapter_config.json and adapter_model.safetensors): train the model again, or "
            "register the folder that holds it.",
            status=503,
            kind="unavailable",
        )
    return folder.resolve(), found.stat().st_mtime_ns


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars from transformers (one per load would fill a server's log)."""
    bars: Any = transformers_logging  # the switches are untyped
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            bars.enable_progress_bar()


# --- generation -------------------------------------------------------------------------------


class GenerationError(Exception):
    """Bad input for this model (`status` 400) or a generation stopped by its deadline (504)."""

    def __init__(self, message: str, *, status: int, kind: str) -> None:
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind


@dataclass(frozen=True)
class Sampling:
    """What a request asks of one generation (None: greedy, no seed, no stop strings)."""

    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # a few generate() options, verbatim


# generate() options a prompt may set through `parameters.extras`.
EXTRA_OPTIONS = ("top_k", "min_p", "repetition_penalty", "no_repeat_ngram_size")


@dataclass(frozen=True)
class Generated:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    output_tokens: int


class Job:
    """One generation's shared state between its worker thread and whoever waits on it: text
    comes out through `on_text` as tokens arrive; `cancel()` and the deadline stop it between
    tokens."""

    def __init__(
        self, *, deadline: float | None = None, on_text: Callable[[str], None] | None = None
    ) -> None:
        self.deadline = deadline  # time.monotonic() value
        self.on_text = on_text
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def prompt_ids(
    loaded: LoadedModel, messages: list[dict[str, Any]] | None, prompt: str | None
) -> list[int]:
    """Token ids of a chat (through the tokenizer's chat template, ending with the assistant's
    turn) or of a completion prompt (as it is)."""
    tokenizer = loaded.tokenizer
    if messages is None:
        return [int(i) for i in tokenizer(prompt or "")["input_ids"]]
    text = tokenizer.apply_chat_template(
        [_plain_message(m) for m in messages], add_generation_prompt=True, tokenize=False
    )
    # The template writes the special tokens out; encoding adds none of its own.
    return [int(i) for i in tokenizer(str(text), add_special_tokens=False)["input_ids"]]


def _plain_message(message: dict[str, Any]) -> dict[str, str]:
    content = message.get("content")
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return {
        "role": str(message.get("role", "user")),
        "content": "" if content is None else str(content),
    }


def generate(loaded: LoadedModel, ids: list[int], sampling: Sampling, job: Job) -> Generated:
    """Generate after `ids`; blocking. Raises GenerationError for a prompt that does not fit,
    a cancelled job or one past its deadline."""
    window = loaded.context_window
    if len(ids) >= window:
        raise GenerationError(
            f"The prompt has {len(ids)} tokens; this model's context window is {window}.",
            status=400,
            kind="context_length_exceeded",
        )
    max_new = min(sampling.max_tokens, window - len(ids))
    tracker = _Tracker(loaded.tokenizer, sampling.stop, job)
    options: dict[str, Any] = {"max_new_tokens": max_new}
    if sampling.temperature:  # None or 0: greedy
        options.update(do_sample=True, temperature=sampling.temperature, top_k=0)
        options["top_p"] = sampling.top_p if sampling.top_p is not None else 1.0
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
    else:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    options.update({k: v for k, v in sampling.extras.items() if k in EXTRA_OPTIONS})
    input_ids = torch.tensor([ids], dtype=torch.long)
    with torch.inference_mode(), loaded.lora.selected(loaded) as model:
        model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            streamer=_Streamer(tracker),
            stopping_criteria=StoppingCriteriaList([_Stop(tracker)]),
            pad_token_id=_pad_id(loaded.tokenizer),
            **options,
        )
    if job.cancelled:
        raise GenerationError("The generation was cancelled.", status=499, kind="cancelled")
    if tracker.timed_out:
        raise GenerationError("The local model did not finish in time.", status=504, kind="timeout")
    tracker.finish()
    return Generated(
        text=tracker.emitted,
        finish_reason="stop" if tracker.stopped or tracker.ended_by_eos else "length",
        prompt_tokens=len(ids),
        output_tokens=tracker.tokens,
    )


class _Tracker:
    """Decodes tokens as they come, hands out text that can no longer change, and finds stop
    strings. Text that might be the start of a stop string, or half of a UTF-8 character, is
    held back until the next token settles it, so the pieces handed out always add up to the
    final output."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: tuple[str, ...], job: Job) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.job = job
        self.eos_ids = _eos_ids(tokenizer)
        self.ids: list[int] = []
        self.tokens = 0  # generated tokens, the final end-of-sequence token excepted
        self.emitted = ""
        self.stopped = False  # a stop string was found
        self.ended_by_eos = False
        self.timed_out = False

    def add(self, new: list[int]) -> None:
        if self.stopped:
            return
        for token in new:
            if token in self.eos_ids:
                self.ended_by_eos = True
                continue
            self.ids.append(token)
            self.tokens += 1
        text = self._text()
        cut = self._first_stop(text)
        if cut is not None:
            self.stopped = True
            self._emit(text[:cut])
            return
        self._emit(text[: len(text) - self._held_back(text)])

    def finish(self) -> None:
        """The generation ended: hand out what was held back (no stop string can complete now)."""
        if not self.stopped:
            self._emit(self._text())

    def should_stop(self) -> bool:
        if self.job.past_deadline():
            self.timed_out = True
        return self.stopped or self.timed_out or self.job.cancelled

    def _text(self) -> str:
        return str(
            self.tokenizer.decode(
                self.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        )

    def _first_stop(self, text: str) -> int | None:
        found = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _held_back(self, text: str) -> int:
        held = 1 if text.endswith("\ufffd") else 0  # an incomplete multi-byte character
        for s in self.stop:
            for size in range(min(len(s) - 1, len(text)), held, -1):
                if text.endswith(s[:size]):
                    held = size
                    break
        return held

    def _emit(self, text: str) -> None:
        if not text.startswith(self.emitted) or len(text) <= len(self.emitted):
            return
        piece = text[len(self.emitted) :]
        self.emitted = text
        if self.job.on_text is not None:
            self.job.on_text(piece)


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    pad = tokenizer.pad_token_id
    return _first(tokenizer.eos_token_id) if pad is None else int(pad)


def _first(ids: Any) -> int | None:
    if ids is None:
        return None
    return int(ids) if isinstance(ids, int) else int(next(iter(ids)))


def _eos_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(i) for i in eos}


# Without the `local` extra mypy sees these bases as Any.
class _Streamer(BaseStreamer):  # type: ignore[misc, unused-ignore]
    """generate() hands every new token here first (and the prompt once, at the start)."""

    def __init__(self, tracker: _Tracker) -> None:
        self.tracker = tracker
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.tracker.add([int(i) for i in value.reshape(-1).tolist()])

    def end(self) -> None:
        pass


class _Stop(StoppingCriteria):  # type: ignore[misc, unused-ignore]
    """...then asks this whether to stop: a stop string, the deadline or a cancellation."""

    def __init__(self, tracker: _Tracker) -> None:
        self.tracker = tracker

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = self.tracker.should_stop()
        return torch.full(  # type: ignore[return-value, unused-ignore]
            (input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device
        )
