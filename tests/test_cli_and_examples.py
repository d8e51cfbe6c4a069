"""The admin commands and the sample programs, run as a user would run them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, timeout=120)


def example(name: str) -> str:
    return os.path.join(EXAMPLES, name)


def image_of(server, copy_id: int) -> dict:
    """The image (as `images --json` lists it) holding object copy_id: found by the copy,
    not as the newest image, which a scheduled backup on the shared server could be."""
    (backup_id,) = [o["backupid"] for o in json.loads(server.cli("list", "--json").stdout)
                    if o["copyid"] == copy_id]
    (image,) = [i for i in json.loads(server.cli("images", "--json").stdout)
                if i["backupid"] == backup_id]
    return image


def image_file(server, copy_id: int) -> tuple[dict, str]:
    """The image holding object copy_id and its file on the disk unit."""
    image = image_of(server, copy_id)
    return image, os.path.join(server.home, "storage", "disk-default", image["client"],
                               image["backupid"] + ".img")


def test_sample_programs_backup_query_restore_delete(server, tmp_path):
    data = os.urandom(2_345_678)
    out = run(example("xbsa_backup.py"), "/cli/stream", "--buffer", "512", "--service",
              server.address, stdin=data)
    assert out.returncode == 0, out.stderr
    copy_id = int(out.stdout.split(b"copyId ")[1].split()[0])
    src = tmp_path / "file.bin"
    src.write_bytes(os.urandom(1000))
    assert run(example("xbsa_backup.py"), "/cli/file", "--file", str(src), "--service",
               server.address).returncode == 0
    listing = run(example("xbsa_query.py"), "/cli/*", "--service", server.address)
    assert listing.returncode == 0 and b"/cli/stream" in listing.stdout and b"/cli/file" in listing.stdout
    restored = run(example("xbsa_restore.py"), "/cli/stream", "--service", server.address)
    assert restored.returncode == 0
    assert hashlib.sha256(restored.stdout).digest() == hashlib.sha256(data).digest()
    by_id = tmp_path / "by-id.bin"
    assert run(example("xbsa_restore.py"), "/cli/stream", "--copy-id", str(copy_id), "--out",
               str(by_id), "--service", server.address).returncode == 0
    assert by_id.read_bytes() == data
    assert run(example("xbsa_delete.py"), str(copy_id), "--service", server.address).returncode == 0
    gone = run(example("xbsa_restore.py"), "/cli/stream", "--service", server.address)
    assert gone.returncode == 1 and b"BSA_RC_NO_MATCH" in gone.stderr


def test_a_restore_that_fails_midway_leaves_no_file(server, tmp_path):
    """The restore sample writes --out beside it and renames it only once the object was
    read whole: an image damaged on disk fails the restore and leaves nothing that looks
    like a restored file."""
    data = os.urandom(3_000_000)
    out = run(example("xbsa_backup.py"), "/cli/damaged", "--service", server.address,
              stdin=data)
    assert out.returncode == 0, out.stderr
    _image, path = image_file(server, int(re.search(rb"copyId (\d+)", out.stdout).group(1)))
    assert os.path.getsize(path) >= len(data)
    with open(path, "r+b") as f:                 # damage a byte late in the object
        f.seek(len(data) * 2 // 3)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    target = tmp_path / "restored.bin"
    failed = run(example("xbsa_restore.py"), "/cli/damaged", "--out", str(target), "--buffer",
                 "65536", "--service", server.address)
    assert failed.returncode == 1 and b"BSAGetData failed" in failed.stderr, failed.stderr
    assert os.listdir(tmp_path) == []


def test_pythonic_example(server):
    out = run(example("pythonic.py"), "--service", server.address)
    assert out.returncode == 0, out.stderr
    assert b"byte-exact" in out.stdout and b"OBJECT_NOT_FOUND" in out.stdout


def test_jobs_images_list_commands(server):
    data = b"listed object"
    assert run(example("xbsa_backup.py"), "/cli/listed", "--service", server.address,
               stdin=data).returncode == 0
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    assert jobs[0]["type"] == "Backup" and jobs[0]["status"] == 0
    assert {"jobid", "jobtype", "state", "status", "policy", "schedule", "client", "server",
            "started", "elapsed", "ended", "stunit", "try", "kbytes", "files", "owner",
            "parentjob", "backupid"} <= set(jobs[0])
    table = server.cli("jobs")
    assert table.returncode == 0 and "JobID" in table.stdout and "Backup" in table.stdout
    summary = json.loads(server.cli("jobs", "--summary", "--json").stdout)
    assert summary["Total"] == len(jobs) and summary["Success"] >= 1
    log = server.cli("jobs", "--log", str(jobs[0]["jobid"]))
    assert "backup started" in log.stdout and "committed" in log.stdout
    images = json.loads(server.cli("images", "--json").stdout)
    assert images[0]["backupid"] == jobs[0]["backupid"] and images[0]["sched_type"] == "UBAK"
    assert images[0]["expiration"] > images[0]["backup_time"]
    listed = json.loads(server.cli("list", "--json", "/cli/list*").stdout)
    assert [o["path"] for o in listed] == ["/cli/listed"] and listed[0]["size"] == len(data)
    assert "/cli/listed" in server.cli("list", "/cli/*").stdout


@pytest.mark.parametrize("args", [["jobs", "--jobid", "x"], ["images", "--nope"]])
def test_bad_cli_arguments_are_clear_errors(server, args):
    out = server.cli(*args)
    assert out.returncode == 2 and ("Error" in out.stderr or "error" in out.stderr)


@pytest.mark.parametrize("settings,reason", [
    ("x = [", "is not valid TOML"),
    ('[access]\nredirected_restore = "false"\n', "redirected_restore must be true or false"),
    ("[access]\nredirect_restore = true\n", "unknown keys in [access]: redirect_restore"),
    ("[limits]\nmax_sessions = -5\n", "max_sessions must be a whole number from 1"),
    ("[scheduler]\ninterval = true\n", "interval must be a number"),
    ('[features]\nenabled = "DataStore"\n', "enabled must be a list of names"),
    ("listen = 5\n", "listen must be a non-empty string"),
    ("verbose = 1\n", "unknown setting 'verbose'"),
    ('catalog = "nosuchdb://x"\n', "the catalog URL nosuchdb://x cannot be used"),
    ('catalog = "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"\n',
     "cannot open the catalog postgresql+psycopg://u:***@127.0.0.1:1/x"),
])
def test_a_bad_settings_file_stops_the_server_and_the_commands_with_its_reason(
        tmp_path, settings, reason):
    """openxbsa.toml is checked whole: a typo in a key, a quoted boolean (which Python
    would take as true: "false" turning redirected restores on), a value out of range or a
    catalog that cannot be opened stops the server, and every command reading the home,
    with one line naming the file and the key; never a traceback, never a password."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "openxbsa.toml").write_text(settings)
    for args in (["server", "--listen", f"unix:{tmp_path}/s.sock"], ["jobs"]):
        out = subprocess.run([sys.executable, "-m", "openxbsa.cli.main", *args, "--home",
                              str(home)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, (args, out.stderr)
        assert reason in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
        assert "hunter2" not in out.stderr
    assert not (tmp_path / "s.sock").exists()


@pytest.mark.parametrize("settings,reason", [
    ("x = [", "is not valid TOML"),
    ('DB_SCRIPT_PATHS = ["/opt/dbscripts"]\n', "unknown setting 'DB_SCRIPT_PATHS'"),
    ("DB_SCRIPT_PATH = 5\n", "DB_SCRIPT_PATH must be a list of absolute paths"),
    ('DB_SCRIPT_PATH = ["scripts"]\n', "'scripts' is not an absolute path"),
    ('default_script_dir = "db_ext"\n', "'db_ext' is not an absolute path"),
    ('DB_SCRIPT_PATH = ["/a"]\ndb_script_path = ["/b"]\n', "give one"),
])
def test_a_bad_client_configuration_stops_the_client_daemon_with_its_reason(
        tmp_path, settings, reason):
    """The client configuration says where scripts may run from: the daemon refuses a
    file it cannot read exactly, naming it, before it connects anywhere."""
    config = tmp_path / "client.toml"
    config.write_text(settings + 'server = "unix:/nonexistent/xbsa.sock"\n')
    out = subprocess.run([sys.executable, "-m", "openxbsa.cli.main", "clientd", "--config",
                          str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and reason in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "connection" not in out.stderr


def test_a_good_client_configuration_is_read_as_written(tmp_path):
    from openxbsa.clientd.daemon import DEFAULT_SCRIPT_DIR, ClientConfig
    config = tmp_path / "client.toml"
    config.write_text('DB_SCRIPT_PATH = "/opt/dbscripts"\nserver = "backup1:13724"\n')
    c = ClientConfig.load(str(config), None)
    assert (c.server, c.default_script_dir, c.db_script_path) == \
        ("backup1:13724", DEFAULT_SCRIPT_DIR, ["/opt/dbscripts"])
    assert ClientConfig.load(str(config), "unix:/x").server == "unix:/x"
    missing = ClientConfig.load(str(tmp_path / "none.toml"), "unix:/x")
    assert missing.db_script_path == [] and missing.default_script_dir == DEFAULT_SCRIPT_DIR


@pytest.mark.parametrize("listen,reason", [
    ("unix:" + "/tmp/" + "d" * 120 + "/xbsa.sock", "at most 107 bytes"),
    ("unix:/etc/passwd", "exists and is not a socket"),
    ("127.0.0.1:99999", "port must be"),
    ("127.0.0.1:port", "not a number"),
    ("192.0.2.1:13724", "Cannot assign requested address"),     # not this host's address
    ("busy", "Address already in use"),
])
def test_a_server_that_cannot_listen_says_why(tmp_path, listen, reason):
    """A --listen the server cannot use ends it with one line naming the address and the
    reason (exit 1), not a traceback; the passwd file it was pointed at is untouched."""
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    if listen == "busy":
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
    before = os.stat("/etc/passwd")
    try:
        out = subprocess.run([sys.executable, "-m", "openxbsa.cli.main", "server", "--home",
                              str(tmp_path / "home"), "--listen", listen],
                             capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert f"cannot listen on {listen}" in out.stderr and reason in out.stderr, out.stderr
    after = os.stat("/etc/passwd")
    assert (after.st_ino, after.st_size, after.st_mtime) == \
        (before.st_ino, before.st_size, before.st_mtime)


@pytest.mark.parametrize("code,expect", [
    ("196", "backup window closed"), ("0", "successfully completed"), ("50", "client process aborted"),
    ("BSA_RC_NO_MATCH", "Nothing matched"), ("rc:26", "BSA_RC_OBJECT_NOT_FOUND"),
    ("0x4e", "BSA_RC_BUFFER_TOO_SMALL"), ("NBBSA_RC_FEATURE_NOT_LICENSED", "openxbsa.toml"),
])
def test_errors_command_explains_codes(code, expect):
    out = subprocess.run([sys.executable, "-m", "openxbsa.cli.main", "errors", code],
                         capture_output=True, text=True)
    assert out.returncode == 0 and expect in out.stdout and "action:" in out.stdout


def test_every_code_has_a_troubleshooting_entry():
    from openxbsa import status
    from openxbsa.admin.views import troubleshoot
    from openxbsa.xbsa import RC_NAMES
    for rc, name in RC_NAMES.items():
        entry = troubleshoot(name)
        assert entry and entry["code"] == rc and entry["action"] and entry["meaning"]
    for code in status.STATUSES:
        entry = troubleshoot(str(code))
        assert entry and entry["action"]
    assert subprocess.run([sys.executable, "-m", "openxbsa.cli.main", "errors", "BSA_RC_BOGUS"],
                          capture_output=True).returncode == 2


def bpdbjobs_fields(line: str) -> list[str]:
    """Split a `jobs --most-columns` line on its bare commas, undoing the backslash escapes."""
    fields, cur, chars = [], "", iter(line)
    for ch in chars:
        if ch == "\\":
            cur += next(chars)
        elif ch == ",":
            fields.append(cur)
            cur = ""
        else:
            cur += ch
    return fields + [cur]


def test_jobs_in_bpdbjobs_most_columns_form(server):
    """`jobs --most-columns` prints what scripts that parse `bpdbjobs -report -most_columns`
    expect: one line per job, 64 comma-separated fields in NetBackup's column order, epoch
    times, zero-padded elapsed seconds, numeric codes, a comma inside a field escaped."""
    from openxbsa import xbsa as X
    from tests.conftest import descriptor, init, send_all
    path = "/cli/most,columns\\x"
    h = init(server)
    assert X.BSABeginTxn(h) == 0
    assert X.BSACreateObject(h, descriptor(path, 5000), X.BSA_DataBlock32()) == 0
    send_all(h, b"m" * 5000)
    job_id = X.NBBSAGetJobId(h)[1]

    def row() -> tuple[list[str], dict]:
        out = server.cli("jobs", "--most-columns", "--jobid", str(job_id))
        assert out.returncode == 0, out.stderr
        (line,) = out.stdout.splitlines()
        (job,) = json.loads(server.cli("jobs", "--json", "--jobid", str(job_id)).stdout)
        return bpdbjobs_fields(line), job

    assert X.BSAEndData(h) == 0
    assert X.BSABeginTxn(h) == X.BSA_RC_INVALID_CALL_SEQUENCE      # a round trip: all arrived
    f, job = row()                                       # active: no status, writing, killable
    assert len(f) == 64 and f[0] == str(job_id) and (f[1], f[2], f[3]) == ("0", "1", "")
    assert f[13] == "3" and f[52] == "1" and f[10] == ""
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == 0
    X.BSATerminate(h)
    f, job = row()
    assert len(f) == 64
    assert (f[1], f[2], f[3]) == ("0", "3", "0")               # backup, done, status 0
    assert (f[4], f[5], f[6], f[11]) == (job["policy"], job["schedule"], job["client"],
                                         job["stunit"])
    assert int(f[8]) == job["started"] and int(f[10]) == job["ended"] >= job["started"]
    assert re.fullmatch(r"\d{10}", f[9]) and int(f[9]) == job["elapsed"]
    assert (f[14], f[15], f[16]) == (str(job["kbytes"]), "1", path)
    assert (f[21], f[22]) == ("24", "2")                  # DataStore policy, user backup
    assert f[51] == job["backupid"] and f[13] == "" and f[52] == "0"


def test_server_logs_carry_the_job_id_and_read_by_job(server):
    import datetime as dt
    start = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=2)
    done = run(example("xbsa_backup.py"), "/cli/logged", "--service", server.address,
               stdin=b"logged")
    assert done.returncode == 0
    # this backup's job, found from its copyId (not the newest job: the shared server's
    # scheduler may have started another since)
    job = image_of(server, int(re.search(rb"copyId (\d+)", done.stdout).group(1)))["jobid"]
    lines = json.loads(server.cli("logs", "--json", "--job", str(job)).stdout)
    assert lines and all(x["job"] == job for x in lines)
    assert any("backup started" in x["message"] and x["component"] == "jobs" for x in lines)
    assert any("committed" in x["message"] for x in lines)
    assert os.path.exists(os.path.join(server.home, "logs", "requests.log"))
    since = json.loads(server.cli("logs", "--json", "--since", start.strftime("%Y-%m-%d %H:%M:%S")).stdout)
    assert any(x["job"] == job for x in since)
    future = (start + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert json.loads(server.cli("logs", "--json", "--since", future).stdout) == []
    text = server.cli("logs", "--job", str(job)).stdout
    assert f"job {job}" in text and "backup started" in text


def test_policy_commands(server):
    def ok(*args: str) -> str:
        out = server.cli(*args)
        assert out.returncode == 0, out.stderr
        return out.stdout

    ok("policy", "add", "db-prod", "--keyword", "prod", "--priority", "5", "--limit-jobs", "2")
    for args in (("add", "db-long"), ("modify", "db-prod")):          # a keyword phrase is
        out = server.cli("policy", *args, "--keyword", "k" * 129)     # 128 characters at most
        assert out.returncode != 0 and "at most 128" in out.stderr, out
    # inactive before it has a client and a schedule: on a Sunday or Wednesday night the
    # scheduler would otherwise start a real backup on this module's server in between
    ok("policy", "modify", "db-prod", "--inactive")
    ok("policy", "client", "add", "db-prod", "dbhost1")
    ok("policy", "client", "add", "db-prod", "dbhost2")
    ok("policy", "client", "remove", "db-prod", "dbhost2")
    ok("policy", "include", "add", "db-prod", "/etc/openxbsa/db_ext/a.sh")
    ok("policy", "include", "add", "db-prod", "/etc/openxbsa/db_ext/b.sh")
    ok("policy", "schedule", "db-prod", "Weekly", "--calendar", "sun,wed", "--window", "sun",
       "22:00", "6h", "--window", "wed", "23:30", "2h", "--retention", "3")
    (p,) = [x for x in json.loads(ok("policy", "list", "--json")) if x["name"] == "db-prod"]
    assert (p["keyword"], p["priority"], p["limit_jobs"], p["active"]) == ("prod", 5, 2, False)
    assert p["clients"] == ["dbhost1"]
    assert p["include"] == ["/etc/openxbsa/db_ext/a.sh", "/etc/openxbsa/db_ext/b.sh"]
    sched = {s["name"]: s for s in p["schedules"]}
    assert set(sched) == {"Default-Application-Backup", "Weekly"}
    weekly = sched["Weekly"]
    assert (weekly["calendar"], weekly["retention_level"], weekly["sched_type"]) == ("SUN,WED", 3, 0)
    assert weekly["windows"][0] == [79200, 21600] and weekly["windows"][3] == [84600, 7200]
    assert weekly["windows"][1] == [0, 0]
    text = ok("policy", "list")
    assert "Policy db-prod" in text and "SCHEDWIN 79200,21600 0,0" in text
    ok("policy", "schedule", "db-prod", "Weekly", "--delete")
    ok("policy", "delete", "db-prod")
    assert "db-prod" not in ok("policy", "list")


@pytest.mark.parametrize("args,message", [
    (["policy", "add", "openxbsa-default"], "already exists"),
    (["policy", "client", "add", "nope", "h"], "does not exist"),
    (["policy", "schedule", "openxbsa-default", "S"], "needs --frequency or --calendar"),
    (["policy", "schedule", "openxbsa-default", "S", "--frequency", "often"], "not a duration"),
    (["policy", "schedule", "openxbsa-default", "S", "--calendar", "funday"], "MON..SUN"),
    (["policy", "schedule", "openxbsa-default", "S", "--frequency", "1d", "--window", "mon",
      "25:00", "1h"], "not a time of day"),
    (["policy", "add", "x", "--stunit", "nowhere"], "storage unit nowhere does not exist"),
    (["expire", "--backupid", "a_1", "-d", "someday"], "not 0, infinity or a date"),
    (["policy", "add", ""], "not a valid policy name"),
    (["policy", "add", "two words"], "not a valid policy name"),
    (["policy", "schedule", "openxbsa-default", "a/b", "--type", "application"],
     "not a valid schedule name"),
    (["stu", "add", "../../outside", "--kind", "dedup", "--path", "/tmp/never-made"],
     "not a valid storage unit name"),
    (["policy", "client", "add", "openxbsa-default", ""], "is not a client name"),
    (["policy", "client", "add", "openxbsa-default", "db host"], "is not a client name"),
    (["policy", "include", "add", "openxbsa-default", "backup.sh"], "absolute path"),
    (["policy", "include", "add", "openxbsa-default", "/db_ext/a\nb.sh"], "no control"),
    (["policy", "add", "x", "--priority", "100000"], "not in the range"),
    (["jobs", "--jobid", "99999999999999999999999"], "not in the range"),
    (["logs", "--job", "-1"], "not in the range"),
    (["config", "export", "/nonexistent-dir/config.toml"], "cannot write"),
])
def test_policy_commands_refuse_bad_input_clearly(server, args, message):
    out = server.cli(*args)
    assert out.returncode != 0 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not os.path.exists("/tmp/never-made")          # refused before anything is made
    assert not os.path.exists(os.path.normpath(os.path.join(server.home, "keys",
                                                            "../../outside.key")))


def test_a_configuration_file_with_a_mistake_changes_nothing(server, tmp_path):
    """config import checks the whole file first: a bad second policy leaves the first
    uncreated and the policy the file would have replaced as it was."""
    assert server.cli("policy", "add", "keepme").returncode == 0
    assert server.cli("policy", "client", "add", "keepme", "h1").returncode == 0
    before = server.cli("config", "export", "-").stdout
    bad = tmp_path / "bad.toml"
    for body, message in [
        ('[[policy]]\nname = "keepme"\n[[policy]]\nname = "fresh"\nstunit = "nope"\n',
         "storage unit nope does not exist"),
        ('[[policy]]\nname = "fresh"\npriority = 99999999999999999999999\n',
         "priority must be a whole number"),
        ('[[policy]]\nname = "fresh"\nactive = "no"\n', "active must be true or false"),
        ('[[policy]]\nname = "fresh"\nclients = [1, 2]\n', "list of non-empty strings"),
        ('[[policy]]\nname = "fresh"\nclients = ["db host"]\n', "is not a client name"),
        ('[[policy]]\nname = "fresh"\ninclude = ["run.sh"]\n', "absolute path"),
        ('[[policy]]\nname = "fresh"\n[[policy.schedule]]\nname = "s"\nturbo = 1\n',
         "unknown keys turbo"),
        ('[[policies]]\nname = "fresh"\n', "unknown top-level keys policies"),
        ('[[storage_unit]]\nname = "../x"\npath = "/tmp/x"\n', "not a valid storage unit"),
        ('[[storage_unit]]\nname = "u"\npath = "rel/dir"\n', "must be an absolute directory"),
    ]:
        bad.write_text(body)
        out = server.cli("config", "import", str(bad))
        assert out.returncode == 1 and message in out.stderr, (body, out.stderr)
        assert "Traceback" not in out.stderr
        assert server.cli("config", "export", "-").stdout == before, body
    bad.write_bytes(bytes(range(128, 256)))
    out = server.cli("config", "import", str(bad))
    assert out.returncode == 1 and "not valid TOML" in out.stderr and "Traceback" not in out.stderr


def test_storage_units_and_configuration_export_import(server, tmp_path):
    def ok(*args: str) -> str:
        out = server.cli(*args)
        assert out.returncode == 0, out.stderr
        return out.stdout

    ok("stu", "add", "fast", "--path", str(tmp_path / "fast"), "--max-jobs", "4")
    ok("stu", "modify", "fast", "--max-jobs", "8")
    units = {u["name"]: u for u in json.loads(ok("stu", "list", "--json"))}
    assert units["fast"]["max_jobs"] == 8 and units["fast"]["path"] == str(tmp_path / "fast")
    # inactive: an active policy with a daily window would start real scheduled jobs (for
    # a client that is not there) on this module's server, newest in every job listing
    ok("policy", "add", "exported", "--stunit", "fast", "--keyword", "k", "--inactive")
    ok("policy", "client", "add", "exported", "h1")
    ok("policy", "include", "add", "exported", "/etc/openxbsa/db_ext/x.sh")
    ok("policy", "schedule", "exported", "Nightly", "--frequency", "1d", "--window", "all",
       "22:00", "8h", "--retention", "8")
    exported = ok("config", "export", "-")
    ok("policy", "delete", "exported")
    path = tmp_path / "config.toml"
    path.write_text(exported)
    assert "1 policies" in ok("config", "import", str(path)) or "policies imported" in ok(
        "config", "import", str(path))
    assert ok("config", "export", "-") == exported
    bad = tmp_path / "bad.toml"
    bad.write_text('[[policy]]\nname = "b"\n[[policy.schedule]]\nname = "s"\nwindows = [[0, 1]]\n')
    out = server.cli("config", "import", str(bad))
    assert out.returncode == 1 and "seven" in out.stderr
    bad.write_text("not = [toml")
    out = server.cli("config", "import", str(bad))
    assert out.returncode == 1 and "not valid TOML" in out.stderr
    assert server.cli("stu", "add", "fast", "--path", "/x").returncode == 1
    (imported,) = [p for p in json.loads(ok("policy", "list", "--json")) if p["name"] == "exported"]
    assert not imported["active"]                  # the import kept it inactive
    ok("policy", "delete", "exported")


def test_follow_a_job_until_it_ends_and_exit_with_its_status(server):
    from openxbsa import xbsa as X
    from tests.conftest import descriptor, init, send_all
    h = init(server)
    assert X.BSABeginTxn(h) == X.BSA_RC_SUCCESS
    assert X.BSACreateObject(h, descriptor("/cli/follow", 1), X.BSA_DataBlock32()) == 0
    job_id = X.NBBSAGetJobId(h)[1]
    follower = subprocess.Popen([sys.executable, "-m", "openxbsa.cli.main", "jobs", "--follow",
                                 str(job_id), "--home", server.home],
                                stdout=subprocess.PIPE, text=True)
    import time
    time.sleep(1.5)
    assert follower.poll() is None                     # still running: the job is active
    send_all(h, b"x" * 10000)
    assert X.BSAEndData(h) == 0
    assert X.BSAEndTxn(h, X.NBBSA_Vote_CONDITIONAL) == 0
    X.BSATerminate(h)
    out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 1                    # partially successful
    assert "Active" in out and f"job {job_id} ended with status 1" in out


def test_a_large_damaged_object_fails_its_restore_at_the_end(server):
    """Above 8 MiB the disk unit checks a restore on a thread of its own while the bytes go
    out by sendfile: a damaged byte near the end still fails the restore, and only then."""
    from openxbsa import xbsa as X
    from tests.conftest import backup, init
    data = os.urandom(20 << 20)
    h = init(server)
    d = backup(h, "/cli/large", data, buf_len=1 << 20)
    _image, path = image_file(server, d.copyId)
    with open(path, "r+b") as f:
        f.seek(len(data) - 10)
        f.write(bytes([data[-10] ^ 0xFF]))
    assert X.BSABeginTxn(h) == 0
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == 0
    block = X.BSA_DataBlock32(1 << 20, 0, 0, 0, 0, bytearray(1 << 20))
    got = 0
    while (rc := X.BSAGetData(h, block)) == X.BSA_RC_SUCCESS:
        got += block.numBytes
    got += block.numBytes
    assert rc == X.BSA_RC_ABORT_SYSTEM_ERROR and "checksum mismatch" in X.BSAGetLastError()[1]
    assert got == len(data)                # every byte came, then the verdict
    X.BSAEndData(h)
    X.BSAEndTxn(h, X.BSA_Vote_ABORT)
    X.BSATerminate(h)


def test_verify_reports_exactly_the_damaged_objects(server):
    from openxbsa import xbsa as X
    from tests.conftest import descriptor, init, send_all
    h = init(server)
    assert X.BSABeginTxn(h) == 0
    for name, data in (("/cli/v/a", b"a" * 5000), ("/cli/v/b", b"b" * 7000)):
        assert X.BSACreateObject(h, d := descriptor(name, len(data)), X.BSA_DataBlock32()) == 0
        send_all(h, data)
        assert X.BSAEndData(h) == 0
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == 0
    X.BSATerminate(h)
    image, path = image_file(server, d.copyId)
    good = server.cli("verify", "--backupid", image["backupid"], "--json")
    assert good.returncode == 0 and all(o["ok"] for o in json.loads(good.stdout)["objects"])
    with open(path, "r+b") as f:                   # damage one byte of the second object
        f.seek(5000 + 100)
        f.write(b"X")
    bad = server.cli("verify", "--backupid", image["backupid"], "--json")
    report = json.loads(bad.stdout)
    assert bad.returncode == 1 and report["status"] == 85
    assert [(o["path"], o["ok"]) for o in report["objects"]] == [("/cli/v/a", True), ("/cli/v/b", False)]
    (job,) = json.loads(server.cli("jobs", "--json", "--jobid", str(report["job"])).stdout)
    assert (job["jobtype"], job["status"]) == (3, 85)
    assert "/cli/v/b" in server.cli("jobs", "--log", str(job["jobid"])).stdout
    assert server.cli("verify", "--backupid", "nope_1").returncode == 1

    # a restore of the damaged object fails at its end rather than pass the bytes as good;
    # the intact one restores as before
    copies = {o["path"]: o["copyid"] for o in json.loads(
        server.cli("list", "--json", "/cli/v/*").stdout)}
    h = init(server)
    for path, expect_ok in (("/cli/v/a", True), ("/cli/v/b", False)):
        assert X.BSABeginTxn(h) == 0
        assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=copies[path]),
                              X.BSA_DataBlock32()) == 0
        if not expect_ok:
            damaged_restore_job = X.NBBSAGetJobId(h)[1]
        block = X.BSA_DataBlock32(1 << 20, 0, 0, 0, 0, bytearray(1 << 20))
        while (rc := X.BSAGetData(h, block)) == X.BSA_RC_SUCCESS:
            pass
        if expect_ok:
            assert rc == X.BSA_RC_NO_MORE_DATA and bytes(block.bufferPtr[:5000]) == b"a" * 5000
        else:
            assert rc == X.BSA_RC_ABORT_SYSTEM_ERROR
            assert "checksum mismatch" in X.BSAGetLastError()[1]
            assert X.NBBSAGetServerError(h)[1] == 85
        X.BSAEndData(h)
        X.BSAEndTxn(h, X.BSA_Vote_ABORT)
    X.BSATerminate(h)
    (job,) = json.loads(server.cli("jobs", "--json", "--jobid", str(damaged_restore_job)).stdout)
    assert (job["type"], job["status"]) == ("Restore", 85)


@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
def test_finished_jobs_are_cleaned_after_keep_hours_by_the_command_and_by_the_server(
        tmp_path_factory, request, catalog):
    """bpdbjobs -clean: finished jobs older than the keep time leave the job database with
    their logs — by `jobs --clean --keep-hours N`, and by the server itself once an hour
    ([scheduler] keep_jobs_hours, NetBackup's KEEP_JOBS_HOURS, 78 by default) — while a job
    still running, a recent one, and the newest successful scheduled run of a schedule (its
    frequency counts from it) stay; on either catalog database. Ages are set in the real
    catalog: nobody waits 78 hours."""
    import time

    import sqlalchemy as sa

    from openxbsa import xbsa as X
    from tests.conftest import backup, configured_server, descriptor, init, send_all
    settings = "[scheduler]\nkeep_jobs_hours = 2\nattempt_period = 3600\ninterval = {}\n"
    url = request.getfixturevalue("postgres").new_database() if catalog == "postgresql" else ""
    if url:
        settings = f'catalog = "{url}"\n' + settings
    srv = configured_server(tmp_path_factory, settings.format(86400))   # the command's turn
    engine = sa.create_engine(url or "sqlite:///" + os.path.join(srv.home, "catalog.db"))
    try:
        h = init(srv)
        for i in range(4):
            backup(h, f"/clean/{i}", b"x" * 1000)      # jobs 1-4
        assert X.BSABeginTxn(h) == X.BSA_RC_SUCCESS       # job 5: still running
        assert X.BSACreateObject(h, descriptor("/clean/running", 10), X.BSA_DataBlock32()) == 0
        send_all(h, b"y" * 5, buf_len=5)
        day = 86400

        def sql(statement: str, **params: int) -> list[tuple]:
            with engine.begin() as db:
                result = db.execute(sa.text(statement), params)
                return [tuple(r) for r in result] if result.returns_rows else []

        # jobs 1-3 three days old, 3 a scheduled run
        sql("UPDATE jobs SET started = started - :d, ended = ended - :d "
            "WHERE job_id IN (1, 2, 3)", d=3 * day)
        sql("UPDATE jobs SET scheduled = TRUE WHERE job_id = 3")
        assert sql("SELECT 1 FROM job_events WHERE job_id IN (1, 2)")

        def left() -> list[int]:
            return sorted(j["jobid"] for j in json.loads(srv.cli("jobs", "--json").stdout))

        out = srv.cli("jobs", "--clean", "--keep-hours", "48")
        assert out.returncode == 0 and out.stdout.strip().startswith("2 finished jobs"), out
        assert left() == [3, 4, 5]
        assert sql("SELECT job_id FROM job_events WHERE job_id IN (1, 2)") == []
        assert json.loads(srv.cli("jobs", "--log", "4", "--json").stdout)      # logs of kept jobs
        send_all(h, b"y" * 5, buf_len=5)
        assert X.BSAEndData(h) == 0 and X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == 0   # job 5 done
        X.BSATerminate(h)

        srv.stop()              # the server's own hourly clean, at its first tick
        sql("UPDATE jobs SET ended = ended - :h WHERE job_id = 4", h=3 * 3600)
        sql("UPDATE jobs SET started = started - :d, ended = ended - :d, scheduled = TRUE "
            "WHERE job_id = 5", d=day)                       # now the newest scheduled run
        with open(os.path.join(srv.home, "openxbsa.toml"), "w") as f:
            f.write(settings.format(0.2))
        srv.start()
        deadline = time.monotonic() + 60
        while left() != [5] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left() == [5]
        assert srv.cli("jobs", "--clean", "--keep-hours", "-1").returncode != 0   # refused
    finally:
        srv.stop()
        engine.dispose()
