# Sourced by scripts/demo and scripts/test: a virtualenv in .venv with OpenXBSA installed.
# Needs only Python >= 3.11 with pip; sets $PY to the interpreter to use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PYTHON" -m venv "$ROOT/.venv" 2>/dev/null || "$PYTHON" -m venv --without-pip "$ROOT/.venv"
    if [ ! -x "$ROOT/.venv/bin/pip" ]; then
        "$ROOT/.venv/bin/python" -m ensurepip --upgrade >/dev/null 2>&1 || true
    fi
fi
PY="$ROOT/.venv/bin/python"
# The C ABI tests compile with gcc and check the samples with valgrind (Debian packages).
if ! command -v gcc >/dev/null 2>&1 || ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev valgrind >/dev/null
    else
        echo "warning: gcc and valgrind are needed by the C ABI tests; install them" >&2
    fi
fi
stamp="$ROOT/.venv/.installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]"
    touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
