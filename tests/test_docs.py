"""The guide cannot rot: it builds strictly, its code samples run against a real server,
and every call and code has its reference entry."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from openxbsa import status
from openxbsa import xbsa as X
from openxbsa.cabi.build import prototypes
from openxbsa.xbsa._reference import ARGUMENTS, RETURN_CODES

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def blocks(lang: str) -> list[tuple[str, int, str]]:
    out = []
    for page in sorted(DOCS.glob("*.md")):
        for i, m in enumerate(b for b in BLOCK.finditer(page.read_text()) if b.group(1) == lang):
            out.append((page.name, i, m.group(2)))
    return out


def test_site_builds_with_warnings_as_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                          str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    for name in X.CORE_CALLS + X.NBBSA_CALLS:
        assert f'id="{name.lower()}"' in api, name


@pytest.mark.parametrize("page,index,code", blocks("python"),
                         ids=[f"{p}-{i}" for p, i, _ in blocks("python")])
def test_python_samples_run(server, page, index, code):
    env = dict(os.environ, OPENXBSA_HOME=server.home)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"{page} sample {index}: {out.stderr}"


@pytest.mark.parametrize("page,index,code", blocks("c"), ids=[f"{p}-{i}" for p, i, _ in blocks("c")])
def test_c_samples_compile_and_run(server, cbuild, tmp_path, page, index, code):
    src = tmp_path / "sample.c"
    src.write_text(code)
    lib = os.path.dirname(cbuild["abi"])
    subprocess.run(["gcc", "-Wall", "-Werror", "-I", os.path.join(lib, "include"), "-o",
                    str(tmp_path / "sample"), str(src), "-L", lib, "-lxbsa64",
                    f"-Wl,-rpath,{lib}"], check=True)
    out = subprocess.run([str(tmp_path / "sample")], env=dict(os.environ, OPENXBSA_HOME=server.home),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{page} sample {index}: {out.stderr}"


def test_every_call_has_its_reference_entry():
    calls = set(X.CORE_CALLS) | set(X.NBBSA_CALLS)
    assert set(RETURN_CODES) == calls
    for name, codes in RETURN_CODES.items():
        assert codes and all(hasattr(X, rc) for rc, _ in codes), name
        assert (getattr(X, name).__doc__ or "").strip(), f"{name} has no summary"


def test_every_argument_of_every_c_prototype_is_described():
    for name, proto in prototypes().items():
        params = [p.strip().split()[-1].lstrip("*") for p in proto[proto.index("(") + 1:-2].split(",")]
        assert [a for a, _, _ in ARGUMENTS[name]] == params, name
        assert all(d in ("I", "O", "I/O") and m for _, d, m in ARGUMENTS[name]), name


def test_every_code_has_its_troubleshooting_entry():
    sys.path.insert(0, str(DOCS))
    import hooks  # the generator the site uses
    page = hooks.codes_page()
    for rc, name in X.RC_NAMES.items():
        assert f"### {name} ({rc:#x})" in page
    for code in status.STATUSES:
        assert f"### Status {code}" in page
