"""bench/vs_peers runs end to end (issue #6): at a small scale, OpenXBSA only (restic and
borg are optional peers the bench uses when installed). What is asserted is what the bench
reports, not how fast anything is: rates measured, every restore checked byte for byte by
the bench itself, deduplication and compression visible in the bytes on disk, the server's
memory, the kernel time of the file restores and each stage's CPU time reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20


def test_vs_peers_measures_every_input_and_reports_the_targets(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "vs_peers.py"), "--scale", "0.02",
         "--tools", "openxbsa", "--dir", str(tmp_path), "--json", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["raw_disk_mbps"] > 0 and report["raw_disk_cold_mbps"] > 0
    assert "random  ingest / raw disk write" in proc.stdout
    results = report["results"]
    assert set(results) == {"random", "dup", "text", "daily"}
    ours = {kind: r["openxbsa"] for kind, r in results.items()}
    for kind, r in ours.items():
        assert r["ingest"] > 0 and r["restore"] > 0 and r["stream"] > 0, kind
        assert 0 < r["rss"] < 300e6, kind
        assert r["restore_sys"] >= 0, kind
        # CPU per GiB of each stage, the server's and the client's (counted in 10 ms ticks:
        # a 4 MiB daily restore may cost less than one, the backups always more)
        assert set(r["cpu"]) == {"ingest", "restore", "stream"}, kind
        assert all(0 <= cpu < 100 for cpu in r["cpu"].values()), (kind, r["cpu"])
        assert r["cpu"]["ingest"] > 0, kind
    assert ours["random"]["cpu"]["restore"] + ours["random"]["cpu"]["stream"] > 0
    size = 16 * MiB                                  # 0.02 GiB, in whole 16 MiB blocks
    assert ours["random"]["disk"] >= size            # nothing to save on random bytes
    assert ours["text"]["disk"] < size / 2           # compressed
    assert ours["dup"]["disk"] < 1.2 * size          # (two 8 MiB blocks here, maybe distinct)
    assert ours["daily"]["disk"] < 3 * size / 4      # seven 4 MiB days, stored about once
    assert "targets" in proc.stdout
    assert "server peak RSS < 300 MB" in proc.stdout
    assert "restore into a file, kernel s/GiB of the writing process" in proc.stdout
    assert "CPU s/GiB ingest / restore / stream" in proc.stdout
    assert not [n for n in os.listdir(tmp_path) if n.startswith("openxbsa-vs-peers-")], \
        "the bench left its work directory behind"


def test_a_bench_runs_the_server_of_its_own_tree_from_any_directory(tmp_path):
    """A bench of a snapshot (git archive into /tmp, the way two builds are compared) must
    measure that snapshot's server, not the checkout it happens to be started from:
    ``python -m`` would put the current directory first on the child's path. Started here
    from a directory holding another ``openxbsa``, the command bench/_here builds must still
    reach this tree's."""
    other = tmp_path / "openxbsa"
    other.mkdir()
    (other / "__init__.py").write_text("raise ImportError('the wrong tree')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _here, subprocess; "
            "print(subprocess.run(_here.cli('--help'), env=_here.env(), capture_output=True,"
            " text=True).returncode)")
    proc = subprocess.run([sys.executable, "-c", code, os.path.join(ROOT, "bench")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"
    naive = subprocess.run([sys.executable, "-m", "openxbsa.cli.main", "--help"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "the wrong tree" in naive.stderr          # what the bench used to do


def test_catalog_calls_times_each_call_on_sqlite_and_postgresql(tmp_path):
    """bench/catalog_calls at a small scale, with --postgres: every call it names is timed
    on both catalogs and printed against the socket round trip it measured."""
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "catalog_calls.py"), "--objects", "20",
         "--others", "200", "--postgres", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "raw limit: a request and its reply over a Unix socket" in proc.stdout
    for catalog in ("SQLite", "PostgreSQL"):
        assert f"{catalog} catalog, 20 objects timed among 220 of the user's:" in proc.stdout
    for call in ("BSAQueryObject, one match", "BSAGetObject + BSAEndData", "BSADeleteObject",
                 "delete commit, per object"):
        lines = [line for line in proc.stdout.splitlines() if line.strip().startswith(call)]
        assert len(lines) == 2, call
        assert all(float(line.split(" us ")[0].split()[-1]) > 0 for line in lines), lines
    assert os.listdir(tmp_path) == [], "the bench left a server home behind"
