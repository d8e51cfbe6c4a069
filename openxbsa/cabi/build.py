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
    ffi.embedding_api("\n".join(prototypes().values()))
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ffi.set_source("_openxbsa_cabi",
                   '#include <stdlib.h>\n#include "xbsa.h"\n#include "nbbsa.h"\n'
                   + FORK_GUARD,
                   include_dirs=[str(INCLUDE)],
                   extra_link_args=[f"-Wl,-rpath,{libdir}"] if libdir else [])
    path = [p for p in sys.path if p] + [str(ROOT)]
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
