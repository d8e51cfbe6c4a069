"""Policies run by the scheduler through the client daemon, end to end, with no human action:
parent and child jobs, authorized locations, limits, windows, expiration, restarts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from openxbsa import xbsa as X
from tests.conftest import ServerProc, backup, configured_server, find, init, query

HOST = socket.gethostname()
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def scheduling_server(tmp_path_factory, settings: str) -> ServerProc:
    """A server with scheduler settings, an authorized script directory, and a way to
    start client daemons (killed with the server by ``stop_all``)."""
    srv = configured_server(tmp_path_factory, settings)
    home = srv.home
    scripts = os.path.join(home, "db_ext")
    os.makedirs(scripts)
    cfg = os.path.join(home, "client.toml")
    with open(cfg, "w") as f:
        f.write(f'default_script_dir = "{scripts}"\n')
    daemons: list[subprocess.Popen] = []

    def clientd() -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "openxbsa.cli.main", "clientd", "--server",
                              srv.address, "--config", cfg],
                             env=dict(os.environ, PYTHON=sys.executable, EXAMPLES=EXAMPLES),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemons.append(p)
        return p

    def stop_all() -> None:
        for p in daemons:
            p.kill()
            p.wait()
        srv.stop()

    srv.scripts, srv.clientd, srv.stop_all = scripts, clientd, stop_all  # type: ignore[attr-defined]
    return srv


@pytest.fixture
def sched(tmp_path_factory):
    srv = scheduling_server(tmp_path_factory, "[scheduler]\ninterval = 0.3\nmax_jobs_per_client = 1\n")
    yield srv
    srv.stop_all()


def script(path: str, body: str) -> str:
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


BACKUP = ('echo "dumping {name}"\n'
          'printf "{name} data" | "$PYTHON" "$EXAMPLES/xbsa_backup.py" /sched/{name} '
          '--service "$BSA_SERVICE_HOST" || exit 6\n')


def cli(srv: ServerProc, *args: str) -> str:
    out = srv.cli(*args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def policy(srv: ServerProc, name: str, script_path: str, *sched: str, via_cli: bool = False) -> None:
    """A policy running ``script_path`` on this host hourly — through the CLI, or (faster,
    for tests that make many) straight into the catalog with the same rules."""
    if via_cli:
        cli(srv, "policy", "add", name)
        cli(srv, "policy", "client", "add", name, HOST)
        cli(srv, "policy", "include", "add", name, script_path)
        cli(srv, "policy", "schedule", name, "Full", *(sched or ("--frequency", "1h")))
        return
    from openxbsa.admin import views
    from openxbsa.server import schedule
    catalog = views.open_catalog(srv.home)
    catalog.add_policy(name)
    catalog.set_policy_client(name, HOST, True)
    catalog.set_policy_include(name, script_path, True)
    catalog.set_schedule(name, "Full", sched_type=0, retention_level=1, frequency=3600,
                         calendar="", windows=schedule.dump_windows(schedule.ALWAYS))
    catalog.dispose()


_CATALOGS: dict[str, object] = {}


def jobs(srv: ServerProc) -> list[dict]:
    """The job list as `openxbsa jobs --json` shows it, read in-process (polled often)."""
    from openxbsa.admin import views
    if srv.home not in _CATALOGS:
        _CATALOGS[srv.home] = views.open_catalog(srv.home)
    return views.jobs(_CATALOGS[srv.home])  # type: ignore[arg-type]


def wait_for(pred, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("timed out")


def parents(srv: ServerProc, name: str) -> list[dict]:
    return [j for j in jobs(srv) if j["policy"] == name and j["parentjob"] is None
            and j["schedule"] == "Full"]


def test_a_scheduled_run_backs_up_through_xbsa_with_parent_and_child_jobs(sched):
    policy(sched, "nightly", script(os.path.join(sched.scripts, "db.sh"), BACKUP.format(name="db")),
           via_cli=True)
    sched.clientd()
    done = wait_for(lambda: [j for j in parents(sched, "nightly") if j["state_name"] == "Done"])
    parent = done[0]
    assert parent["status"] == 0 and parent["type"] == "Backup"
    children = [j for j in jobs(sched) if j["parentjob"] == parent["jobid"]]
    assert len(children) == 1
    child = children[0]
    assert (child["status"], child["policy"], child["schedule"]) == (0, "nightly",
                                                                      "Default-Application-Backup")
    log = cli(sched, "jobs", "--log", str(parent["jobid"]))
    assert "dumping db" in log and "exited with 0" in log
    h = init(sched)
    rc, found = find(h, query("/sched/db", owner=("XBSA Client", "XBSA App")))
    assert rc == X.BSA_RC_SUCCESS and len(found) == 1
    X.BSATerminate(h)
    images = json.loads(cli(sched, "images", "--json"))
    assert images[0]["policy"] == "nightly" and images[0]["jobid"] == child["jobid"]
    time.sleep(1.5)                                      # more ticks: nothing is due again
    assert len(parents(sched, "nightly")) == 1


def test_a_script_outside_the_authorized_locations_is_refused(sched, tmp_path):
    outside = script(str(tmp_path / "evil.sh"), "echo should never run\n")
    policy(sched, "rogue", outside)
    sched.clientd()
    parent = wait_for(lambda: [j for j in parents(sched, "rogue") if j["state_name"] == "Done"])[0]
    assert parent["status"] == 6
    log = cli(sched, "jobs", "--log", str(parent["jobid"]))
    assert "not in an authorized location" in log and "should never run" not in log


def test_world_writable_and_missing_scripts_are_refused(sched):
    loose = script(os.path.join(sched.scripts, "loose.sh"), "echo nope\n")
    os.chmod(loose, 0o777)
    policy(sched, "loose", loose)
    policy(sched, "missing", os.path.join(sched.scripts, "absent.sh"))
    sched.clientd()
    loose_run = wait_for(lambda: [j for j in parents(sched, "loose") if j["state_name"] == "Done"])[0]
    missing = wait_for(lambda: [j for j in parents(sched, "missing") if j["state_name"] == "Done"])[0]
    assert loose_run["status"] == 6 and "writable by everyone" in cli(sched, "jobs", "--log",
                                                                      str(loose_run["jobid"]))
    assert missing["status"] == 71


def test_script_exit_status_becomes_the_parent_status(sched):
    policy(sched, "fails", script(os.path.join(sched.scripts, "fail.sh"), "echo broken; exit 2\n"))
    sched.clientd()
    parent = wait_for(lambda: [j for j in parents(sched, "fails") if j["state_name"] == "Done"])[0]
    assert parent["status"] == 2


def test_runs_wait_with_a_reason_when_no_client_daemon_is_connected(sched):
    policy(sched, "waiting", script(os.path.join(sched.scripts, "w.sh"), "exit 0\n"))
    queued = wait_for(lambda: [j for j in parents(sched, "waiting") if j["state_name"] == "Queued"
                               and "not connected" in (sched_reason(sched, j["jobid"]) or "")])
    assert queued
    sched.clientd()
    done = wait_for(lambda: [j for j in parents(sched, "waiting") if j["state_name"] == "Done"])
    assert done[0]["status"] == 0 and sched_reason(sched, done[0]["jobid"]) is None


def sched_reason(srv: ServerProc, job_id: int) -> str | None:
    from openxbsa.admin.views import open_catalog
    return open_catalog(srv.home).job(job_id)["queue_reason"]


def test_limits_hold_with_twenty_queued_runs(sched):
    body = "sleep 0.2\n"
    for i in range(20):
        policy(sched, f"many{i:02d}", script(os.path.join(sched.scripts, f"m{i}.sh"), body))
    sched.clientd()
    most_active = 0
    deadline = time.time() + 120
    while time.time() < deadline:
        rows = [j for j in jobs(sched) if j["policy"].startswith("many")]
        most_active = max(most_active, sum(j["state_name"] == "Active" for j in rows))
        if len(rows) == 20 and all(j["state_name"] == "Done" for j in rows):
            break
        time.sleep(0.05)
    rows = [j for j in jobs(sched) if j["policy"].startswith("many")]
    assert len(rows) == 20 and all(j["status"] == 0 for j in rows)
    assert most_active == 1                                     # max jobs per client: 1


def test_a_run_still_queued_when_its_window_closes_ends_with_196(sched):
    policy(sched, "late", script(os.path.join(sched.scripts, "late.sh"), "exit 0\n"))
    wait_for(lambda: [j for j in parents(sched, "late") if j["state_name"] == "Queued"])
    now = time.localtime()
    closed_day = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")[(now.tm_wday + 2) % 7]
    cli(sched, "policy", "schedule", "late", "Full", "--frequency", "1h", "--window",
        closed_day, "01:00", "1h")
    run = wait_for(lambda: [j for j in parents(sched, "late") if j["state_name"] == "Done"])[0]
    assert run["status"] == 196


def test_user_directed_backup_outside_the_application_window_is_199(sched):
    now = time.localtime()
    closed_day = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")[(now.tm_wday + 2) % 7]
    cli(sched, "policy", "add", "office")
    cli(sched, "policy", "schedule", "office", "Default-Application-Backup", "--type",
        "application", "--window", closed_day, "09:00", "8h")
    h = init(sched, extra=["NBBSA_POLICY=office"])
    assert X.BSABeginTxn(h) == X.BSA_RC_SUCCESS
    d = X.BSA_ObjectDescriptor(objectName=X.BSA_ObjectName("", "/office/x"), copyType=3,
                               objectType=2, resourceType="r", estimatedSize=1)
    assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == X.BSA_RC_ABORT_SYSTEM_ERROR
    assert X.NBBSAGetServerError(h)[1] == 199
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == X.BSA_RC_SUCCESS
    X.BSATerminate(h)


def test_expiration_removes_exactly_the_expired_images_and_their_bytes(sched):
    h = init(sched)
    keep = backup(h, "/exp/keep", b"k" * 5000)
    gone = backup(h, "/exp/gone", b"g" * 5000)
    X.BSATerminate(h)
    images = {i["jobid"]: i for i in json.loads(cli(sched, "images", "--json"))}
    gone_id = [i["backupid"] for i in images.values()][0]   # newest first: /exp/gone
    files = lambda: sorted(os.listdir(os.path.join(sched.home, "storage", "disk-default", HOST)))
    assert len(files()) == 2
    cli(sched, "expire", "--backupid", gone_id, "-d", "0")
    wait_for(lambda: len(files()) == 1)
    h = init(sched)
    assert find(h, query("/exp/gone"))[0] == X.BSA_RC_NO_MATCH
    assert find(h, query("/exp/keep"))[1][0].copyId == keep.copyId
    X.BSATerminate(h)
    assert gone_id not in cli(sched, "images", "--json")
    assert any(j["type"] == "Image Cleanup" and j["status"] == 0 for j in jobs(sched))
    assert gone.copyId != keep.copyId
    out = sched.cli("expire", "--backupid", "nope_1", "-d", "0")
    assert out.returncode == 1 and "no image" in out.stderr


def test_a_server_restart_in_the_middle_loses_nothing(sched):
    slow = "sleep 30\n"
    policy(sched, "restart", script(os.path.join(sched.scripts, "slow.sh"), slow))
    sched.clientd()
    first = wait_for(lambda: [j for j in parents(sched, "restart") if j["state_name"] == "Active"])[0]
    sched.kill()
    sched.start()
    failed = wait_for(lambda: [j for j in parents(sched, "restart")
                               if j["jobid"] == first["jobid"] and j["state_name"] == "Done"])[0]
    assert failed["status"] == 130
    # the run is still due: it is queued again, once, and runs when a daemon reconnects
    cli(sched, "policy", "include", "remove", "restart", os.path.join(sched.scripts, "slow.sh"))
    cli(sched, "policy", "include", "add", "restart",
        script(os.path.join(sched.scripts, "quick.sh"), "exit 0\n"))
    sched.clientd()
    again = wait_for(lambda: [j for j in parents(sched, "restart")
                              if j["jobid"] != first["jobid"] and j["state_name"] == "Done"])
    assert len(again) == 1 and again[0]["status"] == 0


def test_a_failing_run_is_retried_after_the_delay_at_most_twice(tmp_path_factory):
    srv = scheduling_server(tmp_path_factory,
                            "[scheduler]\ninterval = 0.2\nretry_delay = 2\nbackup_attempts = 2\n")
    srv.clientd()
    try:
        policy(srv, "flaky", script(os.path.join(srv.scripts, "f.sh"), "exit 6\n"))
        first = wait_for(lambda: [j for j in parents(srv, "flaky") if j["state_name"] == "Done"])
        t0 = time.time()
        both = wait_for(lambda: [j for j in parents(srv, "flaky") if j["state_name"] == "Done"]
                        if len(parents(srv, "flaky")) >= 2 else None, timeout=30)
        assert time.time() - t0 >= 1.0                      # the retry waited the delay
        time.sleep(3)                                       # past another delay: no third try
        runs = parents(srv, "flaky")
        assert len(runs) == 2 and all(j["status"] == 6 for j in runs) and first and both
    finally:
        srv.stop_all()


def test_cancel_a_queued_an_active_run_and_an_application_job_then_restart(sched, tmp_path):
    marker = tmp_path / "finished"
    policy(sched, "long", script(os.path.join(sched.scripts, "long.sh"),
                                 f"sleep 20\ntouch {marker}\n"))
    queued = wait_for(lambda: [j for j in parents(sched, "long") if j["state_name"] == "Queued"])[0]
    assert "cancelled" in cli(sched, "jobs", "--cancel", str(queued["jobid"]))
    assert [j for j in parents(sched, "long") if j["jobid"] == queued["jobid"]][0]["status"] == 150
    # the run is due again (a cancel is a failed attempt only after the retry delay): restart it
    out = cli(sched, "jobs", "--restart", str(queued["jobid"]))
    new_id = int(out.split("as job ")[1])
    sched.clientd()
    active = wait_for(lambda: [j for j in parents(sched, "long")
                               if j["jobid"] == new_id and j["state_name"] == "Active"])[0]
    time.sleep(0.5)
    assert "asked to stop" in cli(sched, "jobs", "--cancel", str(active["jobid"]))
    stopped = wait_for(lambda: [j for j in parents(sched, "long")
                                if j["jobid"] == new_id and j["state_name"] == "Done"], timeout=15)[0]
    assert stopped["status"] == 150 and not marker.exists()
    assert "cancelled" in cli(sched, "jobs", "--log", str(new_id))
    # an application's backup in progress
    h = init(sched)
    assert X.BSABeginTxn(h) == X.BSA_RC_SUCCESS
    d = X.BSA_ObjectDescriptor(objectName=X.BSA_ObjectName("", "/cancel/me"), copyType=3,
                               objectType=2, resourceType="r", estimatedSize=1)
    assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == X.BSA_RC_SUCCESS
    job_id = X.NBBSAGetJobId(h)[1]
    cli(sched, "jobs", "--cancel", str(job_id))
    wait_for(lambda: [j for j in jobs(sched) if j["jobid"] == job_id and j["state_name"] == "Done"])
    assert [j for j in jobs(sched) if j["jobid"] == job_id][0]["status"] == 150
    assert X.BSAEndData(h) in (X.BSA_RC_SUCCESS, X.BSA_RC_ABORT_SYSTEM_ERROR)
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_TRANSACTION_ABORTED
    X.BSATerminate(h)
    h = init(sched)
    assert find(h, query("/cancel/me"))[0] == X.BSA_RC_NO_MATCH
    X.BSATerminate(h)
    out = sched.cli("jobs", "--cancel", str(job_id))
    assert out.returncode == 1 and "already done" in out.stderr


def test_a_storage_unit_runs_at_most_its_max_jobs_and_queues_the_rest(sched):
    cli(sched, "stu", "modify", "disk-default", "--max-jobs", "1")
    first = init(sched)
    assert X.BSABeginTxn(first) == X.BSA_RC_SUCCESS
    d = X.BSA_ObjectDescriptor(objectName=X.BSA_ObjectName("", "/stu/one"), copyType=3,
                               objectType=2, resourceType="r", estimatedSize=1)
    assert X.BSACreateObject(first, d, X.BSA_DataBlock32()) == X.BSA_RC_SUCCESS
    code = ("import sys\nfrom openxbsa import xbsa as X\n"
            "rc, h = X.BSAInit(None, X.BSA_ObjectOwner(), ['BSA_API_VERSION=1.1.0', "
            "'BSA_SERVICE_HOST=' + sys.argv[1]])\nX.BSABeginTxn(h)\n"
            "d = X.BSA_ObjectDescriptor(objectName=X.BSA_ObjectName('', '/stu/two'), copyType=3, "
            "objectType=2, resourceType='r', estimatedSize=1)\n"
            "assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == 0\n"
            "X.BSAEndData(h)\nassert X.BSAEndTxn(h, 1) == 0\nX.BSATerminate(h)\n")
    second = subprocess.Popen([sys.executable, "-c", code, sched.address])
    waiting = wait_for(lambda: [j for j in jobs(sched) if j["state_name"] == "Queued"
                                and "disk-default is busy" in (j["queuereason"] or "")])
    assert len(waiting) == 1 and second.poll() is None
    assert X.BSAEndData(first) == X.BSA_RC_SUCCESS
    assert X.BSAEndTxn(first, X.BSA_Vote_COMMIT) == X.BSA_RC_SUCCESS
    X.BSATerminate(first)
    assert second.wait(30) == 0
    job = [j for j in jobs(sched) if j["jobid"] == waiting[0]["jobid"]][0]
    assert job["state_name"] == "Done" and job["status"] == 0 and job["queuereason"] is None


def test_multiple_streams_make_one_child_job_per_script(sched):
    first = script(os.path.join(sched.scripts, "s1.sh"), BACKUP.format(name="s1"))
    second = script(os.path.join(sched.scripts, "s2.sh"), BACKUP.format(name="s2"))
    from openxbsa.admin import views
    from openxbsa.server import schedule
    catalog = views.open_catalog(sched.home)
    catalog.add_policy("streams", multiple_streams=True)
    catalog.set_policy_client("streams", HOST, True)
    catalog.set_policy_include("streams", first, True)
    catalog.set_policy_include("streams", second, True)
    catalog.set_schedule("streams", "Full", sched_type=0, retention_level=1, frequency=3600,
                         calendar="", windows=schedule.dump_windows(schedule.ALWAYS))
    sched.clientd()
    parent = wait_for(lambda: [j for j in parents(sched, "streams") if j["state_name"] == "Done"])[0]
    assert parent["status"] == 0
    streams = [j for j in jobs(sched) if j["parentjob"] == parent["jobid"]]
    assert sorted(j["current_object"] for j in streams) == sorted([first, second])
    assert len(streams) == 2 and all(j["status"] == 0 for j in streams)
    backups = [j for j in jobs(sched) if j["parentjob"] in {s["jobid"] for s in streams}]
    assert len(backups) == 2 and all(j["status"] == 0 for j in backups)
    h = init(sched)
    assert len(find(h, query("/sched/s?", owner=("XBSA Client", "XBSA App")))[1]) == 2
    X.BSATerminate(h)


def test_a_client_daemon_reporting_an_impossible_status_fails_its_run_and_is_dropped(sched):
    """A (root) peer registered as this host's client daemon answers a run with a status no
    job can have (beyond 32 bits): the server ends the run with 50, client process aborted,
    says so, drops that connection and goes on serving."""
    from openxbsa import wire
    from openxbsa.xbsa._client import Connection
    policy(sched, "odd", script(os.path.join(sched.scripts, "ok.sh"), "exit 0\n"))
    conn = Connection(sched.address)
    try:
        conn.call("init", env=["BSA_API_VERSION=1.1.0"], owner=["", ""])
        conn.call("clientd")
        run = conn.channel.read_message(wire.REP)["run"]
        conn.channel.send_message(wire.REQ, {"op": "jobdone", "job": run["job"],
                                             "status": 2**63})
        refusal = conn.channel.read_message(wire.REP)
        assert refusal["ok"] is False and "unexpected message" in refusal["msg"]
        with pytest.raises((wire.ProtocolError, OSError)):
            conn.channel.read_message(wire.REP)           # ... and the server hangs up
    finally:
        conn.close()
    failed = wait_for(lambda: [j for j in parents(sched, "odd") if j["jobid"] == run["job"]
                               and j["state_name"] == "Done"])[0]
    assert failed["status"] == 50
    h = init(sched)                                       # the server goes on serving
    X.BSATerminate(h)
