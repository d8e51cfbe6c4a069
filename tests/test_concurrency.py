"""Eight client processes backing up and restoring at once, each its own session and job."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import ServerProc

WORKER = textwrap.dedent("""
    import hashlib, json, random, sys
    from openxbsa import xbsa as X
    address, n = sys.argv[1], int(sys.argv[2])
    rng = random.Random(n)
    rc, h = X.BSAInit(None, X.BSA_ObjectOwner("worker", str(n)),
                      ["BSA_API_VERSION=1.1.0", "BSA_SERVICE_HOST=" + address])
    assert rc == 0, X.BSAGetLastError()
    made = []
    for t in range(3):
        assert X.BSABeginTxn(h) == 0
        for i in range(4):
            data = rng.randbytes(rng.randint(0, 600_000))
            d = X.BSA_ObjectDescriptor(objectOwner=X.BSA_ObjectOwner("worker", str(n)),
                                       objectName=X.BSA_ObjectName("", f"/par/{n}/{t}/{i}"),
                                       copyType=3, objectType=2, resourceType="r",
                                       estimatedSize=len(data))
            assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == 0, X.BSAGetLastError()
            for off in range(0, len(data), 32768):
                chunk = data[off:off + 32768]
                assert X.BSASendData(h, X.BSA_DataBlock32(32768, len(chunk), 0, 0, 0, chunk)) == 0
            assert X.BSAEndData(h) == 0
            made.append((d.copyId, hashlib.sha256(data).hexdigest()))
        assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == 0, X.BSAGetLastError()
    ok = 0
    assert X.BSABeginTxn(h) == 0
    for copy_id, digest in made:
        assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=copy_id), X.BSA_DataBlock32()) == 0
        buf = bytearray(50000); out = bytearray()
        while True:
            blk = X.BSA_DataBlock32(50000, 0, 0, 0, 0, buf)
            rc = X.BSAGetData(h, blk)
            out += buf[:blk.numBytes]
            if rc != 0:
                break
        assert rc == X.BSA_RC_NO_MORE_DATA
        assert X.BSAEndData(h) == 0
        ok += hashlib.sha256(out).hexdigest() == digest
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == 0
    X.BSATerminate(h)
    print(json.dumps({"restored_ok": ok, "objects": len(made)}))
""")


def test_eight_processes_at_once(server: ServerProc):
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, server.address, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(8)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert all(r == {"restored_ok": 12, "objects": 12} for r in results)
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    backups = [j for j in jobs if j["type"] == "Backup"]
    restores = [j for j in jobs if j["type"] == "Restore"]
    assert len(backups) == 24 and all(j["status"] == 0 and j["files"] == 4 for j in backups)
    assert len(restores) == 96 and all(j["status"] == 0 for j in restores)
    images = json.loads(server.cli("images", "--json").stdout)
    assert len({i["backupid"] for i in images}) == 24
