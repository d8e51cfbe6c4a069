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
stamp="$ROOT/.venv/.installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]"
    touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
