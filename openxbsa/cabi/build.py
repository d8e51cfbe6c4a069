"""Build libxbsa64.so (and the libxbsa.so link) with cffi's embedding mode.

    openxbsa libxbsa build --out DIR      # or: python -m openxbsa.cabi.build DIR

The library embeds this Python: each C call enters ``openxbsa.xbsa`` through
``openxbsa.cabi.glue``, so C and Python applications share one implementation. The C
compiler checks our declarations against ``libxbsa/include/xbsa.h`` and ``nbbsa.h``.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys
import sysconfig
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
INCLUDE = ROOT / "libxbsa" / "include"

TYPES = """
typedef short BSA_Int16;
typedef int BSA_Int32;
typedef unsigned short BSA_UInt16;
typedef unsigned int BSA_UInt32;
typedef struct { BSA_UInt32 left; BSA_UInt32 right; } BSA_UInt64;
typedef long BSA_Handle;
typedef short BSA_ShareId;
typedef char BSA_SecurityToken;
typedef int... BSA_CopyType;
typedef int... BSA_ObjectStatus;
typedef int... BSA_ObjectType;
typedef int... BSA_Vote;
struct tm { int tm_sec; int tm_min; int tm_hour; int tm_mday; int tm_mon; int tm_year;
            int tm_wday; int tm_yday; int tm_isdst; long tm_gmtoff; const char *tm_zone; ...; };
typedef struct { BSA_UInt16 issue; BSA_UInt16 version; BSA_UInt16 level; } BSA_ApiVersion;
typedef struct { char bsa_ObjectOwner[64]; char app_ObjectOwner[64]; } BSA_ObjectOwner;
typedef struct { char objectSpaceName[1024]; char pathName[1024]; } BSA_ObjectName;
typedef struct {
    BSA_UInt32 rsv1; BSA_ObjectOwner objectOwner; BSA_ObjectName objectName;
    struct tm createTime; BSA_CopyType copyType; BSA_UInt64 copyId; BSA_UInt64 restoreOrder;
    char rsv2[31]; char rsv3[31]; BSA_UInt64 estimatedSize; char resourceType[31];
    BSA_ObjectType objectType; BSA_ObjectStatus objectStatus; char rsv4[31];
    char objectDescription[100]; unsigned char objectInfo[256];
} BSA_ObjectDescriptor;
typedef struct {
    BSA_ObjectOwner objectOwner; BSA_ObjectName objectName; struct tm createTime_from;
    struct tm createTime_to; struct tm rsv1; struct tm rsv2; BSA_CopyType copyType;
    char rsv3[31]; char rsv4[31]; char rsv5[31]; BSA_ObjectType objectType;
    BSA_ObjectStatus objectStatus; char rsv6[100];
} BSA_QueryDescriptor;
typedef struct {
    BSA_UInt32 bufferLen; BSA_UInt32 numBytes; BSA_UInt32 headerBytes; BSA_ShareId shareId;
    BSA_UInt32 shareOffset; void *bufferPtr;
} BSA_DataBlock32;
typedef struct {
    int jobId; int jobType; int jobState; int jobStatus; char policyName[128];
    char scheduleName[128]; char clientName[256]; char serverName[256]; struct tm startTime;
    struct tm endTime; BSA_UInt64 kiloBytes; BSA_UInt64 numObjects; char backupId[320];
} NBBSA_JOB_INFO;
void *calloc(size_t, size_t);
void free(void *);
void oxb_watch_connection(int fd);
void oxb_started(void);
"""

# C, because a C program's fork() runs no Python: the child lets go of its copy of the
# session's connection at once (the descriptor becomes /dev/null, so nothing it does
# reaches the server and the server sees the connection end when the parent's does).
FORK_GUARD = """
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
static int oxb_connection_fd = -1;
static void oxb_in_child(void) {
    if (oxb_connection_fd >= 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup3(null, oxb_connection_fd, O_CLOEXEC);
            close(null);
        }
        oxb_connection_fd = -1;
    }
}
static void oxb_watch_connection(int fd) {
    static int registered;
    if (!registered)
        registered = pthread_atfork(NULL, NULL, oxb_in_child) == 0;
    oxb_connection_fd = fd;
}
"""

# C, because it must work when Python cannot.
#
# The library starts its Python itself, on the first call, rather than leave it to cffi's
# Py_InitializeEx: that one reads the agent's environment (a PYTHONHOME meant for some
# other Python aborts the agent's process), searches for the standard library from the
# agent's executable, and imports cffi's backend before our own paths are set, so it
# finds only what the base Python has installed (a venv's cffi is not). Here the
# interpreter is isolated from the environment, reads names and paths as UTF-8 whatever
# the agent's locale (which it leaves alone), and has the prefixes and module path of the
# Python that built the library (a venv's included).
#
# A program may load the library with dlopen(RTLD_LOCAL), as many agents do: libpython's
# symbols then stay out of the global scope, and the extension modules the embedded Python
# imports could not find them. The constructor promotes libpython, already loaded as our
# dependency, to RTLD_GLOBAL.
#
# Each exported call is a C wrapper around the Python one (PREFIX + name). If Python fails
# to start, cffi makes every Python call return 0, which is BSA_RC_SUCCESS: a backup that
# stored nothing would look committed. The wrappers answer BSA_RC_ABORT_SYSTEM_ERROR
# instead, and BSAGetLastError says why.
START_GUARD = """
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
__attribute__((constructor)) static void oxb_share_libpython(void) {
    Dl_info info;
    if (dladdr((void *)&Py_IsInitialized, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
}
static pthread_once_t oxb_once = PTHREAD_ONCE_INIT;
static int oxb_python_ok, oxb_ready;
static char oxb_start_error[600] =
    "BSA_RC_ABORT_SYSTEM_ERROR: the OpenXBSA library could not start its embedded Python "
    "(the reason is on standard error); rebuild it with openxbsa libxbsa build";
static void oxb_start_failed(PyStatus st) {
    snprintf(oxb_start_error, sizeof oxb_start_error,
             "BSA_RC_ABORT_SYSTEM_ERROR: the OpenXBSA library could not start its "
             "embedded Python (%s%s%s); rebuild it with openxbsa libxbsa build",
             st.func ? st.func : "", st.func ? ": " : "", st.err_msg ? st.err_msg : "");
}
static void oxb_start_python(void) {
    PyPreConfig pre;
    PyConfig config;
    PyStatus st;
    wchar_t *path = NULL;
    const char **p;
    if (Py_IsInitialized()) {           /* loaded by a Python program: its interpreter */
        oxb_python_ok = 1;
        return;
    }
    PyPreConfig_InitIsolatedConfig(&pre);
    pre.utf8_mode = 1;        /* UTF-8 names and paths whatever the agent's locale, which */
    st = Py_PreInitialize(&pre);            /* stays as the agent set it */
    if (PyStatus_Exception(st)) {
        oxb_start_failed(st);
        return;
    }
    PyConfig_InitIsolatedConfig(&config);
    config.install_signal_handlers = 0;
    /* the building Python's prefixes: in a venv, site then reads the venv's packages */
    st = PyConfig_SetBytesString(&config, &config.base_prefix, OXB_PYTHON_BASE_PREFIX);
    if (!PyStatus_Exception(st))
        st = PyConfig_SetBytesString(&config, &config.base_exec_prefix, OXB_PYTHON_BASE_PREFIX);
    if (!PyStatus_Exception(st))
        st = PyConfig_SetBytesString(&config, &config.prefix, OXB_PYTHON_PREFIX);
    if (!PyStatus_Exception(st))
        st = PyConfig_SetBytesString(&config, &config.exec_prefix, OXB_PYTHON_PREFIX);
    config.module_search_paths_set = 1;
    for (p = OXB_PYTHON_PATH; *p && !PyStatus_Exception(st); p++) {
        st = PyConfig_SetBytesString(&config, &path, *p);
        if (!PyStatus_Exception(st))
            st = PyWideStringList_Append(&config.module_search_paths, path);
    }
    PyMem_RawFree(path);
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        oxb_start_failed(st);
        return;
    }
    PyEval_SaveThread();                /* cffi takes the GIL for each call */
    oxb_python_ok = 1;
}
static int oxb_python_up(void) {
    pthread_once(&oxb_once, oxb_start_python);
    return oxb_python_ok;
}
static void oxb_started(void) { __atomic_store_n(&oxb_ready, 1, __ATOMIC_RELEASE); }
static int oxb_failed(void) { return !__atomic_load_n(&oxb_ready, __ATOMIC_ACQUIRE); }
static int oxb_last_error(BSA_UInt32 *sizePtr, char *errorCodePtr) {
    BSA_UInt32 need = (BSA_UInt32)strlen(oxb_start_error) + 1;
    if (sizePtr == NULL)
        return BSA_RC_NULL_ARGUMENT;
    if (*sizePtr < need || errorCodePtr == NULL) {
        *sizePtr = need;
        return BSA_RC_BUFFER_TOO_SMALL;
    }
    memcpy(errorCodePtr, oxb_start_error, need);
    *sizePtr = need;
    return BSA_RC_SUCCESS;
}
"""


def c_string(text: str) -> str:
    """``text`` as a C string literal (UTF-8, every other byte escaped)."""
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\?' else f"\\{b:03o}"
                         for b in text.encode()) + '"'


def python_setup(path: list[str]) -> str:
    """The prefixes and module path of the Python building the library, for START_GUARD."""
    return (f"#define OXB_PYTHON_BASE_PREFIX {c_string(sys.base_prefix)}\n"
            f"#define OXB_PYTHON_PREFIX {c_string(sys.prefix)}\n"
            f"static const char *OXB_PYTHON_PATH[] = {{"
            + "".join(f"{c_string(p)}, " for p in path) + "NULL};\n")


PREFIX = "oxb_py_"      # the Python side of each call; the C wrapper has the API's name


def python_side(name: str, proto: str) -> str:
    """The prototype ``proto`` of call ``name`` renamed to its Python side."""
    return proto.replace(f" {name}(", f" {PREFIX}{name}(", 1)


def wrappers(protos: dict[str, str]) -> str:
    """The exported C functions: each calls its Python side, and answers
    BSA_RC_ABORT_SYSTEM_ERROR (BSAGetLastError: the reason) if Python did not start."""
    out = []
    for name, proto in protos.items():
        params = proto[proto.index("(") + 1:proto.rindex(")")]
        args = ", ".join(re.findall(r"\w+", p)[-1] for p in params.split(","))
        failed = ("return oxb_last_error(sizePtr, errorCodePtr);" if name == "BSAGetLastError"
                  else "return BSA_RC_ABORT_SYSTEM_ERROR;")
        out.append(f"{python_side(name, proto)}\n"
                   f"{proto[:-1]} {{\n"
                   f"    int rc;\n"
                   f"    if (!oxb_python_up())\n        {failed}\n"
                   f"    rc = {PREFIX}{name}({args});\n"
                   f"    if (oxb_failed())\n        {failed}\n"
                   f"    return rc;\n}}\n")
    return "\n".join(out)


def prototypes() -> dict[str, str]:
    """The call prototypes of xbsa.h and nbbsa.h, by name: the one declaration of the API."""
    text = "\n".join((INCLUDE / h).read_text() for h in ("xbsa.h", "nbbsa.h"))
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return {m.group(1): f"int {m.group(1)}({' '.join(m.group(2).split())});"
            for m in re.finditer(r"^int\s+(\w+)\s*\(([^;]*?)\);", text, flags=re.M | re.S)}


INIT = """
import sys
for _p in reversed({path!r}):
    if _p not in sys.path:
        sys.path.insert(0, _p)
from _openxbsa_cabi import ffi, lib
from openxbsa.cabi import glue
glue.install(ffi, lib)
"""


def build(out: str) -> pathlib.Path:
    """Compile libxbsa64.so into ``out`` (with libxbsa.so linking to it and include/)."""
    import cffi

    outdir = pathlib.Path(out).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    ffi = cffi.FFI()
    ffi.cdef(TYPES)
    protos = prototypes()
    ffi.embedding_api("\n".join(python_side(n, p) for n, p in protos.items()))
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    path = [p for p in sys.path if p] + [str(ROOT)]
    ffi.set_source("_openxbsa_cabi",
                   '#include <stdlib.h>\n#include "xbsa.h"\n#include "nbbsa.h"\n'
                   + FORK_GUARD + python_setup(path) + START_GUARD + wrappers(protos),
                   include_dirs=[str(INCLUDE)], libraries=["dl"],
                   extra_link_args=[f"-Wl,-rpath,{libdir}"] if libdir else [])
    ffi.embedding_init_code(INIT.format(path=path))
    with tempfile.TemporaryDirectory() as tmp:
        built = ffi.compile(tmpdir=tmp, target="libxbsa64.*", verbose=False)
        target = outdir / "libxbsa64.so"
        shutil.copy2(built, target)
    link = outdir / "libxbsa.so"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink("libxbsa64.so", link)
    inc = outdir / "include"
    inc.mkdir(exist_ok=True)
    for h in ("xbsa.h", "nbbsa.h"):
        shutil.copy2(INCLUDE / h, inc / h)
    return target


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "libxbsa" / "build")))
