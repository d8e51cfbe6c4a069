"""libxbsa64.so: compiled C programs against a real server — ABI, every call, samples, speed
paths, parallel processes, and valgrind on the sample programs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ServerProc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(prog: str, *args: str, stdin: bytes | None = None, env: dict | None = None,
        timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([prog, *args], input=stdin, capture_output=True, timeout=timeout,
                          env=env)


def test_struct_sizes_and_offsets_match_netbackup(cbuild):
    out = run(cbuild["abi"]).stdout.decode()
    got = dict(line.rsplit(" ", 1) for line in out.splitlines())
    expected = {
        "sizeof(BSA_ObjectDescriptor)": 2760, "sizeof(BSA_QueryDescriptor)": 2608,
        "sizeof(BSA_DataBlock32)": 32, "sizeof(BSA_ApiVersion)": 6, "sizeof(BSA_UInt64)": 8,
        "sizeof(struct tm)": 56, "sizeof(enum)": 4, "sizeof(BSA_Handle)": 8,
        "BSA_ObjectDescriptor.rsv1": 0, "BSA_ObjectDescriptor.objectOwner": 4,
        "BSA_ObjectDescriptor.objectName": 132, "BSA_ObjectDescriptor.createTime": 2184,
        "BSA_ObjectDescriptor.copyType": 2240, "BSA_ObjectDescriptor.copyId": 2244,
        "BSA_ObjectDescriptor.restoreOrder": 2252, "BSA_ObjectDescriptor.rsv2": 2260,
        "BSA_ObjectDescriptor.rsv3": 2291, "BSA_ObjectDescriptor.estimatedSize": 2324,
        "BSA_ObjectDescriptor.resourceType": 2332, "BSA_ObjectDescriptor.objectType": 2364,
        "BSA_ObjectDescriptor.objectStatus": 2368, "BSA_ObjectDescriptor.rsv4": 2372,
        "BSA_ObjectDescriptor.objectDescription": 2403, "BSA_ObjectDescriptor.objectInfo": 2503,
        "BSA_QueryDescriptor.objectOwner": 0, "BSA_QueryDescriptor.objectName": 128,
        "BSA_QueryDescriptor.createTime_from": 2176, "BSA_QueryDescriptor.createTime_to": 2232,
        "BSA_QueryDescriptor.rsv1": 2288, "BSA_QueryDescriptor.rsv2": 2344,
        "BSA_QueryDescriptor.copyType": 2400, "BSA_QueryDescriptor.rsv3": 2404,
        "BSA_QueryDescriptor.rsv4": 2435, "BSA_QueryDescriptor.rsv5": 2466,
        "BSA_QueryDescriptor.objectType": 2500, "BSA_QueryDescriptor.objectStatus": 2504,
        "BSA_QueryDescriptor.rsv6": 2508, "BSA_DataBlock32.bufferLen": 0,
        "BSA_DataBlock32.numBytes": 4, "BSA_DataBlock32.headerBytes": 8,
        "BSA_DataBlock32.shareId": 12, "BSA_DataBlock32.shareOffset": 16,
        "BSA_DataBlock32.bufferPtr": 24, "BSA_UInt64.left": 0, "BSA_UInt64.right": 4,
        "NBBSA_Vote_CONDITIONAL": 99, "BSA_RC_BUFFER_TOO_SMALL": 78,
    }
    assert {k: int(got[k]) for k in expected} == expected


def test_every_exported_symbol(cbuild):
    out = subprocess.run(["nm", "-D", "--defined-only", os.path.join(os.path.dirname(cbuild["abi"]),
                                                                      "libxbsa64.so")],
                         capture_output=True, text=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if " T " in line}
    from openxbsa import xbsa as X
    assert set(X.CORE_CALLS) | set(X.NBBSA_CALLS) <= names


EXPECTED_CALLS = {
    "QueryApiVersion": 0, "QueryApiVersion.null": 85, "QueryServiceProvider.small": 78,
    "QueryServiceProvider": 0, "QueryServiceProvider.null": 85, "Init.null_handle": 85,
    "Init.null_owner": 85, "Init.null_env": 85, "Init.bad_env": 80, "Init.version": 75,
    "GetLastError.size_query": 78, "GetLastError": 0, "GetLastError.null": 85,
    "Init.unread_token": 0, "Terminate.unread_token": 0, "Init": 0,
    "Init.second": 5, "GetEnvironment": 0, "GetEnvironment.null": 85,
    "GetEnvironment.short": 78, "BeginTxn.bad_handle": 6,
    "EndTxn.no_txn": 5, "CreateObject.no_txn": 5, "BeginTxn": 0, "BeginTxn.nested": 5,
    "GetJobId.before_create": 5, "CreateObject.null_desc": 85, "CreateObject.null_block": 85,
    "CreateObject.bad_copytype": 81, "CreateObject.unterminated": 81, "CreateObject": 0,
    "GetJobId": 0, "GetJobId.null": 85, "QueryObject.in_backup": 5, "SendData.null": 85,
    "SendData.null_buffer": 52, "SendData.too_many_bytes": 52, "SendData": 0, "EndData": 0,
    "SendData.after_end": 5, "LogMsg": 0, "EndTxn.bad_vote": 11, "EndTxn": 0, "GetJobInfo": 0,
    "FreeJobInfo": 0, "FreeJobInfo.null": 85, "QueryObject.null": 85,
    "QueryObject.bad_status": 83, "QueryObject": 0, "GetNextQueryObject.end": 18,
    "GetObject": 0, "GetMediaIds.small": 78, "GetMediaIds": 0, "SetEnv": 0, "GetEnv": 0,
    "GetEnv.small": 78, "UpdateEnv": 0, "UpdateEnv.null": 85, "ValidateFeatureId": 0,
    "ValidateFeatureId.unlicensed": 0x1001, "GetServerError": 0, "GetErrorString": 0,
    "GetErrorString.small": 78, "AddToMultiObjectRestoreList": 0,
    "AddToMultiObjectRestoreList.null": 85, "GetMultipleObjects": 0, "GetObject.multi": 0,
    "EndGetMultipleObjects": 0, "DeleteObject.zero": 79, "DeleteImage": 0,
    "DeleteObject.gone": 26, "Terminate": 0, "Terminate.again": 6,
}


def test_every_call_success_and_error_paths(cbuild, server: ServerProc):
    out = run(cbuild["calls"], server.address)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    results: dict[str, list[str]] = {}
    for line in lines:
        key, _, rest = line.partition(" ")
        results.setdefault(key, []).append(rest)
    for label, rc in EXPECTED_CALLS.items():
        assert label in results, f"{label} did not run"
        assert all(int(v) == rc for v in results[label]), (label, results[label])
    text = "\n".join(lines)
    assert "version 1.1.0" in text
    assert "provider OpenXBSA/OpenXBSA/0.1.0 delimiter / size 24" in text
    assert "provider.needed 24" in text
    assert "lasterror.size_nonzero 1" in text and "lasterror.terminated 1" in text
    assert "env0 BSA_API_VERSION=1.1.0" in text
    assert "env1.filled 1" in text
    assert "created.copyId_nonzero 1 year_ok 1 status 2 headerBytes 0" in text
    assert "jobinfo.same 1 status 0 objects 1 kb 3" in text
    assert "found.same 1 path /c/calls/one size 3000" in text
    assert "restore.rc 18 total 3000 exact 1" in text        # header bytes untouched
    assert "media D00001 len 6 size 8 doublenul 1" in text and "media.needed 8" in text
    assert "getenv from C size 7" in text and "getenv.needed 7" in text
    assert "servererror.status 159" in text
    assert "errorstring BSA_RC_NO_MATCH: No object matched the query." in text
    assert "errorstring.needed 46" in text
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    log = server.cli("jobs", "--log", str([j for j in jobs if j["type"] == "Backup"][0]["jobid"]))
    assert "C test message" in log.stdout


def test_sample_programs(cbuild, server: ServerProc):
    data = os.urandom(3_000_017)
    out = run(cbuild["xbsa_backup"], "/c/sample", "512", server.address, stdin=data)
    assert out.returncode == 0, out.stderr
    copy_id = out.stdout.split(b"copyId ")[1].split()[0].decode()
    listing = run(cbuild["xbsa_query"], "/c/sample*", server.address)
    assert b"/c/sample" in listing.stdout
    assert b"/c/sample" in run(cbuild["query_lxbsa"], "/c/sample*", server.address).stdout
    restored = run(cbuild["xbsa_restore"], "/c/sample", "8192", server.address)
    assert restored.returncode == 0 and restored.stdout == data
    by_id = run(cbuild["xbsa_restore"], "/c/sample", "100000", server.address, copy_id)
    assert by_id.stdout == data
    second = os.urandom(70_000)
    assert run(cbuild["xbsa_backup"], "/c/sample2", "4096", server.address, stdin=second).returncode == 0
    multi = run(cbuild["xbsa_multi_restore"], "/c/sample*", server.address)
    assert multi.returncode == 0 and multi.stdout in (data + second, second + data)
    assert b"restored 2 object(s)" in multi.stderr and b"status 0: 2 objects" in multi.stderr
    assert run(cbuild["xbsa_delete"], server.address, copy_id).returncode == 0
    gone = run(cbuild["xbsa_restore"], "/c/sample", "512", server.address, copy_id)
    assert gone.returncode == 1 and b"BSA_RC_OBJECT_NOT_FOUND" in gone.stderr


def test_one_gib_through_a_pipe_byte_exact(cbuild, server: ServerProc):
    gen = ("import sys,random; r=random.Random(7); b=r.randbytes(1<<24)\n"
           "for i in range(64): sys.stdout.buffer.write(b[i:]+b[:i])")
    producer = subprocess.Popen([sys.executable, "-c", gen], stdout=subprocess.PIPE)
    digest_in = hashlib.sha256()
    backup = subprocess.Popen([cbuild["xbsa_backup"], "/c/gib", str(1 << 20), server.address],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert producer.stdout is not None and backup.stdin is not None
    total = 0
    while chunk := producer.stdout.read(1 << 20):
        digest_in.update(chunk)
        backup.stdin.write(chunk)
        total += len(chunk)
    backup.stdin.close()
    assert backup.wait(300) == 0 and total == 1 << 30
    restore = subprocess.Popen([cbuild["xbsa_restore"], "/c/gib", str(1 << 20), server.address],
                               stdout=subprocess.PIPE)
    assert restore.stdout is not None
    digest_out, got = hashlib.sha256(), 0
    while chunk := restore.stdout.read(1 << 20):
        digest_out.update(chunk)
        got += len(chunk)
    assert restore.wait(300) == 0
    assert got == total and digest_out.digest() == digest_in.digest()
    copy_ids = [line.split()[0] for line in run(cbuild["xbsa_query"], "/c/gib", server.address)
                .stdout.decode().splitlines()]
    assert run(cbuild["xbsa_delete"], server.address, *copy_ids).returncode == 0


def test_eight_c_processes_in_parallel(cbuild, server: ServerProc):
    payloads = [os.urandom(500_000 + i * 1000) for i in range(8)]
    procs = [subprocess.Popen([cbuild["xbsa_backup"], f"/c/par/{i}", "4096", server.address],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(8)]
    for p, data in zip(procs, payloads):
        assert p.stdin is not None
        p.stdin.write(data)
        p.stdin.close()
    assert all(p.wait(120) == 0 for p in procs)
    procs = [subprocess.Popen([cbuild["xbsa_restore"], f"/c/par/{i}", "3000", server.address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(8)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert outs == payloads
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    par = [j for j in jobs if "/c/par/" in (j["current_object"] or "")]
    assert sorted(j["type"] for j in par) == ["Backup"] * 8 + ["Restore"] * 8
    assert all(j["status"] == 0 for j in par)


def test_threads_take_turns_with_the_one_session(cbuild, server: ServerProc):
    """Six threads of one C program want a session at once. C425 allows one per address
    space: the library must refuse the others with INVALID_CALL_SEQUENCE (never hand out a
    second session, which would cross the threads' transactions) until it is terminated,
    and each thread's session, taken in turn, backs up, queries and restores its own
    object byte-exact."""
    out = run(cbuild["threads"], server.address, "6", timeout=300)
    assert out.returncode == 0, out.stderr.decode()
    word, threads, refused = out.stdout.decode().split()
    assert (word, threads) == ("ok", "6") and int(refused) > 0
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    mine = [j for j in jobs if (j["current_object"] or "").startswith("/stream")]
    assert sorted(j["type"] for j in mine) == ["Backup"] * 6 + ["Restore"] * 6
    assert all(j["status"] == 0 for j in mine)


def test_a_c_agent_that_forks_mid_object_keeps_both_backups_intact(cbuild, server: ServerProc):
    """A C program forks with half an object sent; the child (which runs no Python fork
    hook) opens its own session and backs up; the parent then finishes, commits and reads
    back exactly its 2000 bytes. Before the library dropped the child's copy of the
    parent's connection unsent, the child's BSAInit sent the parent's buffered bytes a
    second time and the parent committed 3000."""
    out = run(cbuild["forks"], server.address, "/c/forks", timeout=120)
    assert out.returncode == 0 and out.stdout == b"ok\n", out.stderr.decode()
    rows = run(cbuild["xbsa_query"], "/c/forks/*", server.address).stdout.decode()
    assert "/c/forks/child" in rows and "/c/forks/parent" in rows


def test_a_parent_that_dies_mid_object_ends_its_job_though_its_child_lives(
        cbuild, server: ServerProc):
    """A C agent forks a helper that never calls the library, then dies with half an
    object sent. The child's copy of the connection must not keep the session alive: the
    server sees the connection end, fails the job and keeps nothing, while the child still
    runs. (The library's fork handler turns the child's copy into /dev/null.)"""
    before = max((j["jobid"] for j in json.loads(server.cli("jobs", "--json").stdout)),
                 default=0)
    out = run(cbuild["forks"], server.address, "/c/crash", "crash", timeout=60)
    assert out.returncode == 3, out.stderr.decode()
    child = int(out.stdout.decode())
    try:
        jobs = server.jobs_once_done(lambda j: j["jobid"] > before and j["type"] == "Backup")
        assert os.path.exists(f"/proc/{child}"), "the helper child should still be running"
        assert jobs and jobs[0]["state_name"] == "Done" and jobs[0]["status"] != 0, jobs
        query = run(cbuild["xbsa_query"], "/c/crash/*", server.address)
        assert "/c/crash/parent" not in query.stdout.decode()
    finally:
        os.kill(child, signal.SIGKILL)


def dlopen_agent(cbuild) -> str:
    """tests/c/dlopen.c, linked against neither libxbsa64 nor libpython: it loads the
    library with dlopen(RTLD_LOCAL) as agents that pick their backup library at run time do."""
    out = os.path.dirname(cbuild["calls"])
    target = os.path.join(out, "dlopen_agent")
    if not os.path.exists(target):
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-I", os.path.join(out, "include"),
                        "-o", target, os.path.join(ROOT, "tests", "c", "dlopen.c"), "-ldl"],
                       check=True, capture_output=True, text=True)
    needed = subprocess.run(["readelf", "-d", target], capture_output=True, text=True).stdout
    assert "libxbsa" not in needed and "libpython" not in needed
    return target


def test_an_agent_that_dlopens_the_library_locally(cbuild, server: ServerProc):
    """RTLD_LOCAL keeps libpython's symbols from the extension modules the embedded Python
    loads; the library makes them visible itself, and the agent backs up and restores."""
    lib = os.path.join(os.path.dirname(cbuild["calls"]), "libxbsa64.so")
    out = run(dlopen_agent(cbuild), lib, server.address, "roundtrip", timeout=120)
    assert out.returncode == 0, (out.stdout, out.stderr.decode()[-2000:])
    assert out.stdout.decode().split() == ["roundtrip", "ok", "300000"]


def test_a_library_that_cannot_start_answers_every_call_with_an_error(cbuild, server: ServerProc):
    """If the embedded Python fails to start (here a fault injected at the library's start),
    every call answers BSA_RC_ABORT_SYSTEM_ERROR and BSAGetLastError says why: never the
    0 that would let an agent believe a backup committed."""
    lib = os.path.join(os.path.dirname(cbuild["calls"]), "libxbsa64.so")
    env = dict(os.environ, OPENXBSA_FAULT="cabi:start", OPENXBSA_FAULT_ACTION="raise")
    out = run(dlopen_agent(cbuild), lib, server.address, "calls", env=env, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    lines = out.stdout.decode().splitlines()
    rcs = dict(line.split(" ", 1) for line in lines if not line.startswith("lasterror"))
    assert rcs == {k: "3" for k in ("QueryApiVersion", "Init", "BeginTxn", "GetJobId",
                                    "EndTxn", "Terminate")}
    assert "lasterror.size_query 78" in lines
    (text,) = [line for line in lines if line.startswith("lasterror 0 ")]
    assert "BSA_RC_ABORT_SYSTEM_ERROR" in text and "embedded Python" in text
    assert "fault injected at cabi:start" in out.stderr.decode()     # the reason, on stderr


def test_the_agents_python_environment_does_not_reach_the_library(cbuild, server: ServerProc):
    """The embedded Python is isolated from the agent's environment: a PYTHONHOME or
    PYTHONPATH set for some other Python (which would make a plain embedded interpreter
    abort the agent's process) changes nothing."""
    lib = os.path.join(os.path.dirname(cbuild["calls"]), "libxbsa64.so")
    env = dict(os.environ, PYTHONHOME="/nonexistent", PYTHONPATH="/nonexistent/lib")
    out = run(dlopen_agent(cbuild), lib, server.address, "roundtrip", env=env, timeout=120)
    assert out.returncode == 0, (out.stdout, out.stderr.decode()[-2000:])
    assert out.stdout.decode().split() == ["roundtrip", "ok", "300000"]


def test_a_c_agent_in_the_c_locale_reaches_a_server_under_a_non_ascii_path(cbuild, tmp_path):
    """Names and paths are UTF-8 to the library whatever the agent's locale: an agent run
    with LC_ALL=C names a socket under a directory called hôme, and backs up and restores."""
    home = str(tmp_path / "h\u00f4me")
    os.makedirs(home)
    srv = ServerProc(home=home, address=f"unix:{home}/xbsa.sock")
    srv.start()
    try:
        lib = os.path.join(os.path.dirname(cbuild["calls"]), "libxbsa64.so")
        env = dict(os.environ, LC_ALL="C", LANG="C")
        out = run(dlopen_agent(cbuild), lib, srv.address, "roundtrip", env=env, timeout=120)
    finally:
        srv.stop()
    assert out.returncode == 0, (out.stdout, out.stderr.decode()[-2000:])
    assert out.stdout.decode().split() == ["roundtrip", "ok", "300000"]


def test_the_library_leaves_the_agents_locale_and_signals_alone(cbuild, server: ServerProc):
    """A session started and ended, the agent's LC_CTYPE is still the "C" it started with
    (its environment says C.UTF-8, which a plainly embedded Python would have set) and no
    signal has a handler the agent did not install."""
    lib = os.path.join(os.path.dirname(cbuild["calls"]), "libxbsa64.so")
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    out = run(dlopen_agent(cbuild), lib, server.address, "process", env=env, timeout=120)
    assert out.returncode == 0, (out.stdout, out.stderr.decode()[-2000:])
    assert out.stdout.decode().splitlines() == ["LC_CTYPE C"]


def test_a_library_whose_python_is_gone_says_so(cbuild, server: ServerProc, tmp_path):
    """A library built with a Python since removed: here a copy whose recorded Python home
    and standard-library paths are overwritten with a directory that does not exist (the
    run-time path to libpython is left alone, so the library still loads). Every call
    answers BSA_RC_ABORT_SYSTEM_ERROR and BSAGetLastError names the cause; the agent lives."""
    import sys
    built = os.path.join(os.path.dirname(cbuild["calls"]), "libxbsa64.so")
    data = open(built, "rb").read()
    home = sys.base_prefix.encode()
    gone = b"/" + b"x" * (len(home) - 1)
    patched = data.replace(home + b"\0", gone + b"\0").replace(home + b"/lib/python",
                                                               gone + b"/lib/python")
    assert patched != data
    lib = tmp_path / "libxbsa64.so"
    lib.write_bytes(patched)
    out = run(dlopen_agent(cbuild), str(lib), server.address, "calls", timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    lines = out.stdout.decode().splitlines()
    assert {line.split()[1] for line in lines if not line.startswith("lasterror")} == {"3"}
    (text,) = [line for line in lines if line.startswith("lasterror 0 ")]
    assert "could not start its embedded Python" in text and "rebuild it" in text


def test_a_c_agent_outlives_a_server_that_dies_mid_backup(cbuild, tmp_path):
    """The server is killed while a C agent sends. The agent's next send must fail with
    BSA_RC_ABORT_SYSTEM_ERROR, not kill the agent by SIGPIPE (which a C program does not
    ignore), and the transaction cannot commit."""
    home = str(tmp_path / "home")
    os.makedirs(home)
    srv = ServerProc(home=home, address=f"unix:{home}/xbsa.sock")
    srv.start()
    lib = os.path.join(os.path.dirname(cbuild["calls"]), "libxbsa64.so")
    agent = subprocess.Popen([dlopen_agent(cbuild), lib, srv.address, "endless"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert agent.stdout is not None
        assert agent.stdout.readline() == b"sending\n"
        time.sleep(1)                           # data flowing
        srv.kill()
        out, err = agent.communicate(timeout=120)
    finally:
        if agent.poll() is None:
            agent.kill()
        srv.stop()
    assert agent.returncode == 0, (agent.returncode, out, err.decode()[-2000:])
    lines = out.decode().splitlines()
    assert "SendData 3" in lines and "EndTxn 32" in lines and "Terminate 0" in lines
    assert any(line.startswith("lasterror 0 BSA_RC_ABORT_SYSTEM_ERROR: connection to the "
                               "backup service lost") for line in lines), lines


def test_interrupting_signals_do_not_break_a_transfer(cbuild, server: ServerProc):
    """A C agent's SIGALRM every 0.5 ms (handler without SA_RESTART) interrupts the
    library's reads and writes a thousand times over: the 64 MiB object still goes out and
    comes back byte-exact, every call answering SUCCESS."""
    out = run(cbuild["signals"], server.address, timeout=300)
    assert out.returncode == 0, out.stderr.decode()
    words = out.stdout.decode().split()
    assert words[:3] == ["ok", str(64 << 20), "bytes,"] and int(words[3]) > 10


VALGRIND = ["valgrind", "-q", "--error-exitcode=99",
            f"--suppressions={os.path.join(ROOT, 'tests', 'c', 'python-embedded.supp')}"]


@pytest.fixture(scope="module")
def valgrind_env():
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind is not installed (scripts/test installs it)")
    return dict(os.environ, PYTHONMALLOC="malloc")


def test_samples_are_valgrind_clean(cbuild, server: ServerProc, valgrind_env):
    data = os.urandom(200_000)
    out = run(*VALGRIND, cbuild["xbsa_backup"], "/c/vg", "512", server.address, stdin=data,
              env=valgrind_env)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    out = run(*VALGRIND, cbuild["xbsa_restore"], "/c/vg", "1000", server.address, env=valgrind_env)
    assert out.returncode == 0 and out.stdout == data, out.stderr.decode()[-3000:]
    out = run(*VALGRIND, cbuild["xbsa_multi_restore"], "/c/vg", server.address, env=valgrind_env)
    assert out.returncode == 0 and out.stdout == data, out.stderr.decode()[-3000:]
    out = run(*VALGRIND, cbuild["calls"], server.address, env=valgrind_env)
    assert out.returncode == 0, out.stderr.decode()[-3000:]


def test_valgrind_would_catch_a_buffer_overrun(cbuild, server: ServerProc, valgrind_env, tmp_path):
    """The check above can fail: a program lying about its buffer's size is reported."""
    assert run(cbuild["xbsa_backup"], "/c/vg", "4096", server.address,
               stdin=os.urandom(10_000)).returncode == 0
    src = tmp_path / "overrun.c"
    src.write_text(r'''
#include <stdlib.h>
#include <string.h>
#include "xbsa.h"
int main(int argc, char **argv) {
    BSA_Handle h; BSA_ObjectOwner o; BSA_QueryDescriptor q; BSA_ObjectDescriptor d;
    BSA_DataBlock32 b; char host[1100]; char v[] = "BSA_API_VERSION=1.1.0";
    char *env[] = {v, host, NULL};
    strcpy(host, "BSA_SERVICE_HOST="); strcat(host, argv[1]);
    memset(&o, 0, sizeof o); memset(&q, 0, sizeof q); memset(&d, 0, sizeof d);
    BSAInit(&h, NULL, &o, env); BSABeginTxn(h);
    strcpy(q.objectName.pathName, "/c/vg"); q.copyType = 1; q.objectType = 1; q.objectStatus = 1;
    strcpy(q.objectOwner.bsa_ObjectOwner, "XBSA Client"); strcpy(q.objectOwner.app_ObjectOwner, "XBSA App");
    BSAQueryObject(h, &q, &d);
    memset(&b, 0, sizeof b); BSAGetObject(h, &d, &b);
    b.bufferPtr = malloc(100); b.bufferLen = 164;     /* a lie */
    BSAGetData(h, &b);
    return 0;
}
''')
    prog = str(tmp_path / "overrun")
    inc = os.path.join(os.path.dirname(cbuild["abi"]), "include")
    lib = os.path.dirname(cbuild["abi"])
    subprocess.run(["gcc", "-g", "-I", inc, "-o", prog, str(src), "-L", lib, "-lxbsa64",
                    f"-Wl,-rpath,{lib}"], check=True)
    out = run(*VALGRIND, prog, server.address, env=valgrind_env)
    assert out.returncode != 0 and b"Invalid write" in out.stderr
