# Sourced by scripts/demo and scripts/test: a virtualenv in .venv with OpenXBSA installed.
# Needs only Python >= 3.11 with pip; sets $PY to the interpreter to use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PYTHON" -m venv "$ROOT/.venv" 2>/dev/null || "$PYTHON" -m venv --without-pip "$ROOT/.venv"
fi
PY="$ROOT/.venv/bin/python"
# A venv made without ensurepip (Debian without python3-venv) is filled by the outer pip.
if "$PY" -m pip --version >/dev/null 2>&1; then
    PIP=("$PY" -m pip)
else
    PIP=("$PYTHON" -m pip --python "$PY")
fi
# The tests (not the demo) compile C with gcc, check the samples with valgrind, run a
# real PostgreSQL and take a network namespace's loopback down (iproute2's ip; unshare and
# nsenter are util-linux, always there): Debian packages, installed when missing (as root).
install_test_packages() {
    local missing=""
    command -v gcc >/dev/null 2>&1 || missing="$missing gcc libc6-dev"
    command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
    command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
    # the C library embeds this Python: it compiles against Python.h and links libpython,
    # which a distribution's Python keeps in its -dev package (python3.11-dev on Debian)
    local ver
    ver="$("$PY" -c 'import os, sys, sysconfig
inc = os.path.join(sysconfig.get_paths()["include"], "Python.h")
print("" if os.path.exists(inc) else "%d.%d" % sys.version_info[:2])')"
    [ -z "$ver" ] || missing="$missing python$ver-dev"
    [ -n "$missing" ] || return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "warning: the tests need these Debian packages:$missing" >&2
    fi
}
stamp="$ROOT/.venv/.installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    "${PIP[@]}" install --quiet --disable-pip-version-check -e "$ROOT[test]"
    touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
