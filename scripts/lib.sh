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
