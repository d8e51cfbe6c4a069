"""Entry point of the ``openxbsa`` command; each sub-command parses, calls a view, formats."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import time
from typing import Any

import click

from openxbsa.admin import views
from openxbsa.errors import OpenXBSAError
from openxbsa.server.config import KEEP_JOBS_HOURS
from openxbsa.wire import default_home

HOME = click.option("--home", default=default_home, show_default="$OPENXBSA_HOME or ~/.openxbsa",
                    help="The server's home directory (catalog, storage, socket).")
JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
# a job ID as the catalog stores it (a larger number is refused by click, not by SQLite)
JOB_ID = click.IntRange(0, 2**63 - 1)


def _when(ts: int | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    cells = [[h for _, h in columns]] + [
        ["" if r.get(k) is None else str(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for line in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


class _Commands(click.Group):
    """The command group: a configuration file or catalog that cannot be used ends any
    command with one line saying why (they are read by every command)."""

    def invoke(self, ctx: click.Context) -> Any:
        from openxbsa.errors import CatalogError
        from openxbsa.server.config import ConfigFileError
        try:
            return super().invoke(ctx)
        except ConfigFileError as exc:
            raise click.ClickException(str(exc)) from None
        except CatalogError as exc:
            raise click.ClickException(exc.message) from None


@click.group(cls=_Commands)
@click.version_option(package_name="openxbsa")
def main() -> None:
    """OpenXBSA: an XBSA 1.1 backup service with NetBackup's extensions."""


@main.command()
@HOME
@click.option("--listen", default=None, help="unix:/path/to.sock or HOST:PORT "
              "(default: unix:HOME/xbsa.sock).")
@click.option("--catalog", default=None, help="SQLAlchemy URL of the catalog "
              "(default: SQLite under HOME).")
@click.option("--log-level", default="INFO", show_default=True)
def server(home: str, listen: str | None, catalog: str | None, log_level: str) -> None:
    """Run the backup service in the foreground."""
    from openxbsa.server import logs
    from openxbsa.server.config import ServerConfig
    from openxbsa.server.service import ListenError, Server, keep_freed_memory

    keep_freed_memory()
    config = ServerConfig.load(home, listen, catalog)
    logs.setup(config.home, log_level)
    srv = Server(config)
    srv.recover()
    try:
        srv.bind()
    except ListenError as exc:
        raise click.ClickException(str(exc)) from None

    def _stop(_sig: int, _frame: Any) -> None:
        srv.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"openxbsa server ready on {srv.config.listen}", err=True)
    srv.serve_forever()


JOB_COLUMNS = [("jobid", "JobID"), ("type", "Type"), ("state_name", "State"),
               ("status", "Status"), ("policy", "Policy"), ("schedule", "Schedule"),
               ("client", "Client"), ("server", "Media Server"), ("started_at", "Started"),
               ("elapsed", "Elapsed"), ("ended_at", "Ended"), ("stunit", "Storage Unit"),
               ("try", "Try"), ("kbytes", "KB"), ("files", "Files"), ("kbpersec", "KB/s"),
               ("dedup_rate", "Dedup %"), ("stored_kb", "Stored KB"),
               ("owner", "Owner"), ("parentjob", "Parent"), ("backupid", "Backup ID"),
               ("current_object", "Current"), ("queuereason", "Queue Reason")]


@main.command()
@HOME
@JSON
@click.option("--jobid", "job_ids", multiple=True, type=JOB_ID, help="Only these jobs.")
@click.option("--log", "log_job", type=JOB_ID, default=None, help="Show the log of one job.")
@click.option("--summary", is_flag=True, help="Counts by state and status (bpdbjobs -summary).")
@click.option("--most-columns", is_flag=True,
              help="One comma-separated line per job, NetBackup's columns in its order "
                   "(bpdbjobs -report -most_columns), for scripts that parse bpdbjobs.")
@click.option("--clean", is_flag=True,
              help="Remove finished jobs older than --keep-hours, with their logs (bpdbjobs "
                   "-clean); the newest successful run of each schedule and client stays.")
@click.option("--keep-hours", type=click.IntRange(0, 87600), default=KEEP_JOBS_HOURS,
              show_default=True,
              help="With --clean: how long finished jobs are kept.")
@click.option("--cancel", "cancel", type=JOB_ID, default=None, help="Stop a queued or active job.")
@click.option("--restart", "restart", type=JOB_ID, default=None,
              help="Run a finished scheduled run again, as a new job.")
@click.option("--follow", "follow", type=JOB_ID, default=None,
              help="Show a job's progress live until it ends; exit with its status.")
def jobs(home: str, as_json: bool, job_ids: tuple[int, ...], log_job: int | None,
         summary: bool, most_columns: bool, clean: bool, keep_hours: int, cancel: int | None,
         restart: int | None, follow: int | None) -> None:
    """The job database, like bpdbjobs."""
    catalog = views.open_catalog(home)
    if clean:
        removed = catalog.clean_jobs(int(time.time()) - keep_hours * 3600)
        click.echo(f"{removed} finished jobs older than {keep_hours} hours removed")
        return
    if follow is not None:
        _follow(catalog, follow)
        return
    try:
        if cancel is not None:
            click.echo(f"job {cancel}: {views.cancel_job(catalog, cancel)}")
            return
        if restart is not None:
            click.echo(f"job {restart} restarted as job {views.restart_job(catalog, restart)}")
            return
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    if log_job is not None:
        entries = views.job_log(catalog, log_job)
        if as_json:
            click.echo(json.dumps(entries, indent=2))
        for e in [] if as_json else entries:
            click.echo(f"{e['time']} {e['severity'].upper():7} {e['message']}")
        return
    rows = views.jobs(catalog, list(job_ids) or None)
    if summary:
        counts = views.job_summary(rows)
        click.echo(json.dumps(counts, indent=2) if as_json else
                   "  ".join(f"{k}: {v}" for k, v in counts.items()))
        return
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if most_columns:
        for r in rows:
            click.echo(views.most_columns(r))
        return
    for r in rows:
        r["started_at"], r["ended_at"] = _when(r["started"]), _when(r["ended"])
    _table(rows, JOB_COLUMNS)


def _follow(catalog: Any, job_id: int) -> None:
    """A live progress line (state, objects, kilobytes, rate, current object) until the job
    ends; the exit code is its status, as bpbackup -w gives (252 for codes above 255)."""
    spinner = "|/-\\"
    tick = 0
    while True:
        rows = views.jobs(catalog, [job_id])
        if not rows:
            raise click.ClickException(f"job {job_id} does not exist")
        j = rows[0]
        line = (f"job {job_id} {j['type']} {j['state_name']:<6} {j['files']:>8} objects "
                f"{j['kbytes']:>10} KB {j['kbpersec']:>8} KB/s  {j['current_object'] or ''}")
        if j["state"] == 3:
            click.echo(f"\r{line[:150]}\x1b[K")
            status = j["status"] or 0
            click.echo(f"job {job_id} ended with status {status}: "
                       f"{views.troubleshoot(str(status))['name']}")   # type: ignore[index]
            sys.exit(status if status <= 255 else 252)
        mark = spinner[tick % 4] if j["state"] == 1 else "."
        reason = f" (waiting: {j['queuereason']})" if j["queuereason"] else ""
        click.echo(f"\r{mark} {line[:140]}{reason}\x1b[K", nl=False)
        tick += 1
        time.sleep(0.5)


@main.command()
@HOME
@JSON
@click.option("--client", default=None)
@click.option("--backupid", default=None)
def images(home: str, as_json: bool, client: str | None, backupid: str | None) -> None:
    """The image catalog, like bpimagelist."""
    rows = views.images(views.open_catalog(home), client, backupid)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        r["backup_at"], r["expires_at"] = _when(r["backup_time"]), _when(r["expiration"])
    _table(rows, [("backup_at", "Backed Up"), ("expires_at", "Expires"), ("backupid", "Backup ID"),
                  ("policy", "Policy"), ("sched_type", "Sched Type"), ("kbytes", "KB"),
                  ("num_files", "Files"), ("dedup_rate", "Dedup %"), ("stored_kb", "Stored KB"),
                  ("jobid", "Job"), ("stunit", "Storage Unit"), ("media_id", "Media")])


@main.command(name="list")
@HOME
@JSON
@click.option("--client", default=None)
@click.option("--backupid", default=None)
@click.argument("pattern", default="*")
def list_(home: str, as_json: bool, client: str | None, backupid: str | None,
          pattern: str) -> None:
    """Backed-up objects whose path matches PATTERN (* and ?), like bplist."""
    rows = views.objects(views.open_catalog(home), client, pattern, backupid)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _table(rows, [("created", "Created"), ("size", "Bytes"), ("owner", "Owner"),
                  ("client", "Client"), ("copyid", "Copy ID"), ("backupid", "Backup ID"),
                  ("objectspace", "Object Space"), ("path", "Path")])


@main.command()
@HOME
@JSON
@click.option("--job", "job", type=JOB_ID, default=None, help="Only the lines of this job.")
@click.option("--since", type=click.DateTime(), default=None, help="From this time (UTC).")
@click.option("--until", type=click.DateTime(), default=None, help="Up to this time (UTC).")
@click.option("--component", "components", multiple=True,
              type=click.Choice(["server", "requests", "jobs", "scheduler", "clientd", "media",
                                 "catalog"]))
def logs(home: str, as_json: bool, job: int | None, since: dt.datetime | None,
         until: dt.datetime | None, components: tuple[str, ...]) -> None:
    """The server's logs, by job and time range."""
    from openxbsa.server import logs as server_logs

    utc = dt.timezone.utc
    lines = server_logs.read(home, job, since and since.replace(tzinfo=utc),
                             until and until.replace(tzinfo=utc),
                             components or server_logs.COMPONENTS)
    if as_json:
        click.echo(json.dumps([{"time": x.time.isoformat(), "level": x.level,
                                "component": x.component, "job": x.job, "message": x.message}
                               for x in lines], indent=2))
        return
    for x in lines:
        click.echo(f"{x.time:%Y-%m-%d %H:%M:%S} {x.level:<7} {x.component:<8} "
                   f"{'job ' + str(x.job) if x.job else '':>9} {x.message}")


@main.command()
@JSON
@click.argument("code")
def errors(as_json: bool, code: str) -> None:
    """What a NetBackup status code (e.g. 196) or XBSA return code (e.g. BSA_RC_NO_MATCH,
    or rc:17) means and what to do, like bperror -S CODE -r."""
    entry = views.troubleshoot(code)
    if entry is None:
        raise click.BadParameter(f"{code} is neither a status code nor an XBSA return code")
    if as_json:
        click.echo(json.dumps(entry, indent=2))
        return
    click.echo(f"{entry['kind']} {entry['code']}: {entry['name']}")
    click.echo(f"  meaning: {entry['meaning']}")
    click.echo(f"  action:  {entry['action']}")


@main.command()
@HOME
@JSON
@click.option("--backupid", required=True, help="The image to verify (client_ctime).")
def verify(home: str, as_json: bool, backupid: str) -> None:
    """Check every object of an image against its checksum without restoring it (bpverify).
    Exit status 0 when intact, 1 when an object is damaged."""
    try:
        report = views.verify_image(views.open_catalog(home), backupid, home)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    except OpenXBSAError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for r in report["objects"]:
            click.echo(f"{'ok     ' if r['ok'] else 'DAMAGED'} {r['copyid']:>10} {r['size']:>12} "
                       f"{r['path']}" + (f"  ({r['problem']})" if r["problem"] else ""))
        damaged = sum(not r["ok"] for r in report["objects"])
        click.echo(f"job {report['job']}: {len(report['objects'])} objects verified, "
                   f"{damaged} damaged (status {report['status']})")
    sys.exit(1 if report["status"] else 0)


@main.group()
def secret() -> None:
    """Host secrets that authenticate TCP clients."""


@secret.command("issue")
@HOME
@click.argument("host")
@click.option("--out", "out", default=None, help="Write the client's secret file here (0600).")
def secret_issue(home: str, host: str, out: str | None) -> None:
    """Issue (or replace) the secret of client HOST."""
    from openxbsa.catalog.store import check_client
    try:
        check_client(host)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="HOST") from None
    catalog = views.open_catalog(home)
    fd = -1
    if out:
        # opened before the secret is replaced: a file that cannot be written must not leave
        # the client with an old secret revoked and the new one nowhere
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise click.ClickException(f"cannot write {out}: {exc.strerror}; the secret of "
                                       f"{host} is unchanged") from None
    value = views.issue_secret(catalog, host)
    text = f'host = "{host}"\nsecret = "{value}"\n'
    if out:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            os.fchmod(f.fileno(), 0o600)
        click.echo(f"secret for {host} written to {out}", err=True)
    else:
        sys.stdout.write(text)


@main.command()
@click.option("--server", "server_address", default=None,
              help="The server's address (default: the config's 'server', else the local socket).")
@click.option("--config", "config_path", default=None,
              help="Client configuration (default /etc/openxbsa/client.toml): "
                   "default_script_dir, DB_SCRIPT_PATH = [...].")
@click.option("--log-level", default="INFO", show_default=True)
def clientd(server_address: str | None, config_path: str | None, log_level: str) -> None:
    """Run this host's client daemon: scheduled runs of policy scripts from authorized
    locations (NetBackup's bpcd and bphdb)."""
    import logging

    from openxbsa.clientd.daemon import ClientConfig, serve

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from openxbsa import wire
    from openxbsa.xbsa._client import ServerError

    try:
        serve(ClientConfig.load(config_path, server_address))
    except ServerError as exc:
        raise click.ClickException(f"the server refused the client daemon: {exc}") from None
    except (OSError, wire.ProtocolError) as exc:
        raise click.ClickException(f"the connection to the server ended: {exc}") from None


@main.group()
def libxbsa() -> None:
    """The C library libxbsa64.so (xbsa.h, nbbsa.h) for existing XBSA programs."""


@libxbsa.command("build")
@click.option("--out", default=None, help="Directory for libxbsa64.so, libxbsa.so and include/ "
              "(default: libxbsa/build in the source tree).")
def libxbsa_build(out: str | None) -> None:
    """Compile libxbsa64.so with the C compiler; link programs with -L DIR -lxbsa64."""
    from openxbsa.cabi import build as cbuild

    target = cbuild.build(out or str(cbuild.ROOT / "libxbsa" / "build"))
    d = target.parent
    click.echo(f"built {target}")
    click.echo(f"compile: cc -I{d}/include prog.c -L{d} -lxbsa64 -Wl,-rpath,{d}")


@main.group()
def pool() -> None:
    """Deduplication pools (crcontrol --dsstat): usage and consistency."""


def _pool_rows(catalog: Any, name: str | None) -> list[dict[str, Any]]:
    """The catalog rows of the dedup storage units (all, or the one named)."""
    rows = [r for r in catalog.list_storage_units()
            if r["kind"] == "dedup" and (name is None or r["name"] == name)]
    if name is not None and not rows:
        raise click.ClickException(f"{name} is not a dedup storage unit")
    return rows


def _pools(home: str, name: str | None) -> list[Any]:
    from openxbsa.storage import open_unit

    rows = _pool_rows(views.open_catalog(home), name)
    try:
        return [open_unit(r, home) for r in rows]
    except OpenXBSAError as exc:
        raise click.ClickException(exc.message) from None


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


@pool.command("usage")
@HOME
@JSON
@click.argument("name", required=False)
def pool_usage(home: str, as_json: bool, name: str | None) -> None:
    """What the images in each dedup pool hold, and what the pool stores for them."""
    report = [u.usage() for u in _pools(home, name)]
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    def ratio(value: float | None, suffix: str = "x") -> str:
        return "-" if value is None else f"{value}{suffix}"     # nothing stored yet

    for u in report:
        click.echo(f"{u['name']}  ({u['path']})\n"
                   f"  images {u['images']}, objects {u['objects']}, "
                   f"logical {_size(u['logical_bytes'])}\n"
                   f"  unique {_size(u['unique_bytes'])} in {u['chunks']} chunks "
                   f"(dedup ratio {ratio(u['dedup_ratio'])}), stored {_size(u['stored_bytes'])} in "
                   f"{u['packs']} packs (compression {ratio(u['compression_ratio'])}), "
                   f"index {_size(u['index_bytes'])}\n"
                   f"  space saved {ratio(u['space_saved_pct'], '%')}, garbage awaiting collection "
                   f"{_size(u['garbage_bytes'])} in {u['garbage_chunks']} chunks")
        if u["images_without_record"]:
            click.echo(f"  {u['images_without_record']} images have no recipe record in the "
                       "packs (written before records existed, or too large): "
                       "`pool rebuild-index` could not recover them")


@pool.command("check")
@HOME
@click.argument("name", required=False)
def pool_check(home: str, name: str | None) -> None:
    """Consistency of each dedup pool's index with its pack files (exit 1 on a problem).
    To check the stored bytes themselves, use ``openxbsa verify``."""
    bad = 0
    for u in _pools(home, name):
        problems = u.check()
        bad += len(problems)
        click.echo(f"{u.name}: " + ("consistent" if not problems else f"{len(problems)} problems"))
        for p in problems:
            click.echo(f"  {p}")
    sys.exit(1 if bad else 0)


@pool.command("rekey")
@HOME
@click.argument("name")
def pool_rekey(home: str, name: str) -> None:
    """Rotate a dedup pool's key file. A new key seals the pool key; the old key file and
    every copy of it stop opening the pool; stored data is not rewritten. A running server
    keeps working. Back up the new key file at once."""
    (unit,) = _pools(home, name)
    try:
        path = unit.rekey()
    except (OSError, OpenXBSAError) as exc:
        raise click.ClickException(f"rotating the key of {name} failed: {exc}") from None
    finally:
        unit.close()
    click.echo(f"{name}: new key written to {path}; back it up now: copies of the previous "
               "key no longer open this pool")


@pool.command("rebuild-index")
@HOME
@JSON
@click.argument("name")
def pool_rebuild_index(home: str, as_json: bool, name: str) -> None:
    """Rebuild a dedup pool's index from its pack files (when index.db is lost or damaged).
    Stop the server first. Recipes are taken from the images' records in the packs and kept
    where the catalog has the object with that checksum; exit 1 if an object is lost."""
    from openxbsa.storage import key_dir
    from openxbsa.storage.dedup import DedupStorageUnit

    catalog = views.open_catalog(home)
    (row,) = _pool_rows(catalog, name)
    try:                                  # the index may be unusable: it is not opened
        unit = DedupStorageUnit(name, row["path"], key_dir=key_dir(home), open_index=False)
        try:
            report = unit.rebuild_index(catalog.stored_objects(name))
        finally:
            unit.close()
    except (OSError, OpenXBSAError) as exc:
        raise click.ClickException(f"rebuilding the index of {name} failed: "
                                   f"{getattr(exc, 'message', exc)}") from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"{name}: {report['packs']} packs, {report['blobs']} blobs, "
                   f"{report['chunks']} chunks in use, {report['objects']} objects recovered")
        if "old_index" in report:
            click.echo(f"  the previous index was kept as {report['old_index']}")
        for line in report["skipped"]:
            click.echo(f"  skipped: {line}")
        for line in report["lost"]:
            click.echo(f"  LOST: {line}")
    sys.exit(1 if report["lost"] else 0)


from openxbsa.cli import policy as _policy  # noqa: E402 - registers its commands

main.add_command(_policy.policy)
main.add_command(_policy.expire)
main.add_command(_policy.stu)
main.add_command(_policy.config)

if __name__ == "__main__":
    main()
