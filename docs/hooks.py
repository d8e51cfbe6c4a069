"""MkDocs hook: generate the reference pages from the code, so they are never typed twice.

reference/api.md        every BSA and NBBSA call: C prototype (from libxbsa/include),
                        Python signature and summary (from openxbsa.xbsa), return codes
                        (from openxbsa.xbsa._reference)
reference/structures.md the C structures (from xbsa.h / nbbsa.h) and the constants
reference/codes.md      every NetBackup status and XBSA return code with what to do
"""

from __future__ import annotations

import inspect
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openxbsa import status  # noqa: E402
from openxbsa.cabi.build import prototypes  # noqa: E402
from openxbsa import xbsa as X  # noqa: E402
from openxbsa.xbsa import _constants as C  # noqa: E402
from openxbsa.xbsa._reference import ARGUMENTS, RETURN_CODES  # noqa: E402

HEADERS = [ROOT / "libxbsa" / "include" / "xbsa.h", ROOT / "libxbsa" / "include" / "nbbsa.h"]


def c_structs() -> list[tuple[str, str]]:
    out = []
    for h in HEADERS:
        text = h.read_text()
        for m in re.finditer(r"typedef (struct|enum) \{.*?\} (\w+);", text, flags=re.S):
            out.append((m.group(2), m.group(0)))
    return out


def api_page() -> str:
    protos = prototypes()
    lines = ["# API reference", "",
             "Generated from the code: the C prototypes from `libxbsa/include/xbsa.h` and "
             "`nbbsa.h`, the Python signatures and summaries from `openxbsa.xbsa`, the return "
             "codes from `openxbsa/xbsa/_reference.py`. In Python, outputs the C call writes "
             "through a pointer to a scalar come back after the rc, structures are filled in "
             "place, and no exception escapes.", ""]
    for group, calls in (("XBSA 1.1 calls", X.CORE_CALLS), ("NetBackup extensions", X.NBBSA_CALLS)):
        lines += [f"## {group}", ""]
        for name in sorted(calls):
            fn = getattr(X, name)
            sig = str(inspect.signature(fn)).replace("'", "")
            doc = " ".join((inspect.getdoc(fn) or "").split())
            lines += [f"### {name}", "", doc, "", "C:", "", "```c", protos[name], "```", "",
                      "Python:", "", "```text", f"{name}{sig}", "```", ""]
            lines += ["| Argument | Direction | Meaning |", "|---|---|---|"]
            lines += [f"| `{a}` | {d} | {m} |" for a, d, m in ARGUMENTS[name]]
            lines += ["", "| Return code | When |", "|---|---|"]
            lines += [f"| `{rc}` | {when} |" for rc, when in RETURN_CODES[name]]
            lines.append("")
    return "\n".join(lines)


def structures_page() -> str:
    lines = ["# Data structures and constants", "",
             "Generated from `libxbsa/include/xbsa.h` and `nbbsa.h`. In Python the structures "
             "are dataclasses of the same names and fields (`openxbsa.xbsa`), every field "
             "defaulting to the zero a C `memset` leaves; `BSA_UInt64` fields are ints, "
             "`struct tm` fields timezone-aware UTC datetimes (None when unset), `objectInfo` "
             "bytes. On x86-64 Linux `sizeof(BSA_ObjectDescriptor)` is 2760, "
             "`sizeof(BSA_QueryDescriptor)` 2608, `sizeof(BSA_DataBlock32)` 32.", ""]
    for name, body in c_structs():
        lines += [f"## {name}", "", "```c", body, "```", ""]
    lines += ["## Constants", "", "| Name | Value |", "|---|---|"]
    for name in sorted(n for n in dir(C) if n.startswith(("BSA_", "NBBSA_"))):
        value = getattr(C, name)
        if isinstance(value, int):
            lines.append(f"| `{name}` | {value:#x} ({value}) |" if name.startswith(("BSA_RC", "NBBSA_RC"))
                         else f"| `{name}` | {value} |")
    return "\n".join(lines) + "\n"


def codes_page() -> str:
    lines = ["# Status and return codes", "",
             "The same entries `openxbsa errors CODE` prints. XBSA return codes come back from "
             "the calls; NetBackup status codes end jobs (`openxbsa jobs`) and come back from "
             "`NBBSAGetServerError`.", "", "## XBSA return codes", ""]
    for rc in sorted(C.RC_NAMES):
        lines += [f"### {C.RC_NAMES[rc]} ({rc:#x})", "", f"**Meaning.** {C.RC_TEXT[rc]}", "",
                  f"**What to do.** {status.RC_ACTIONS[rc]}", ""]
    lines += ["## NetBackup status codes", ""]
    for code in sorted(status.STATUSES):
        entry = status.STATUSES[code]
        lines += [f"### Status {code}", "", f"**Meaning.** {entry.message}.", "",
                  f"**What to do.** {entry.action}", ""]
    return "\n".join(lines)


PAGES = {"reference/api.md": api_page, "reference/structures.md": structures_page,
         "reference/codes.md": codes_page}


def generate(docs_dir: pathlib.Path) -> None:
    for rel, make in PAGES.items():
        path = docs_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = make()
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def on_pre_build(config, **kwargs):  # noqa: ANN001 - MkDocs hook signature
    generate(pathlib.Path(config["docs_dir"]))
