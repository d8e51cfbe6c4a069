"""Policy, schedule, client and backup-selection commands (bppllist, bpplinfo, bpplsched,
bpplclients, bpplinclude) and expiration (bpexpdate)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from openxbsa.admin import views
from openxbsa.catalog.store import (INFINITY, SCHED_APPLICATION, SCHED_FULL, check_client,
                                    check_name, check_script)
from openxbsa.server import schedule
from openxbsa.server.config import ConfigFileError, Fields, load_toml
from openxbsa.wire import default_home

HOME = click.option("--home", default=default_home, show_default="$OPENXBSA_HOME or ~/.openxbsa")


def _catalog(home: str):  # noqa: ANN202
    return views.open_catalog(home)


def _guard(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def policy() -> None:
    """DataStore policies: clients, backup selections (scripts) and schedules."""


@policy.command("list")
@HOME
@click.option("--json", "as_json", is_flag=True)
def policy_list(home: str, as_json: bool) -> None:
    """Every policy with its clients, scripts and schedules (bppllist)."""
    rows = _catalog(home).list_policies()
    if as_json:
        for p in rows:
            for sch in p["schedules"]:
                sch["windows"] = schedule.parse_windows(sch["windows"])
        click.echo(json.dumps(rows, indent=2))
        return
    for p in rows:
        click.echo(f"Policy {p['name']}  active={'yes' if p['active'] else 'no'}  "
                   f"priority={p['priority']}  limit_jobs={p['limit_jobs'] or 'unlimited'}  "
                   f"keyword={p['keyword']!r}  stunit={p['stunit']}")
        click.echo(f"  clients:  {', '.join(p['clients']) or '-'}")
        click.echo(f"  include:  {', '.join(p['include']) or '-'}")
        for sch in p["schedules"]:
            kind = "Application Backup" if sch["sched_type"] == SCHED_APPLICATION else "Automatic Full"
            when = (f"every {sch['frequency']} s" if sch["frequency"]
                    else f"on {sch['calendar']}" if sch["calendar"] else "")
            click.echo(f"  schedule: {sch['name']} ({kind}) {when} retention level "
                       f"{sch['retention_level']}; SCHEDWIN "
                       + " ".join(f"{a},{b}" for a, b in schedule.parse_windows(sch["windows"])))


@policy.command("add")
@HOME
@click.argument("name")
@click.option("--keyword", default="")
@click.option("--priority", type=click.IntRange(0, 99999), default=0)
@click.option("--limit-jobs", type=click.IntRange(0, 999), default=0, help="Jobs at once for this policy; 0 = no limit.")
@click.option("--stunit", default="disk-default")
@click.option("--inactive", is_flag=True)
@click.option("--multiple-streams", is_flag=True)
def policy_add(home: str, name: str, keyword: str, priority: int, limit_jobs: int, stunit: str,
               inactive: bool, multiple_streams: bool) -> None:
    """Create a DataStore policy (with its Default-Application-Backup schedule)."""
    _guard(_catalog(home).add_policy, name, keyword=keyword, priority=priority,
           limit_jobs=limit_jobs, stunit=stunit, active=not inactive,
           multiple_streams=multiple_streams)
    click.echo(f"policy {name} created")


@policy.command("modify")
@HOME
@click.argument("name")
@click.option("--keyword", default=None)
@click.option("--priority", type=click.IntRange(0, 99999), default=None)
@click.option("--limit-jobs", type=click.IntRange(0, 999), default=None)
@click.option("--stunit", default=None)
@click.option("--active/--inactive", default=None)
def policy_modify(home: str, name: str, **changes: Any) -> None:
    """Change a policy's attributes (bpplinfo -modify)."""
    values = {k: v for k, v in changes.items() if v is not None}
    _guard(_catalog(home).modify_policy, name, **values)
    click.echo(f"policy {name} modified")


@policy.command("delete")
@HOME
@click.argument("name")
def policy_delete(home: str, name: str) -> None:
    _guard(_catalog(home).delete_policy, name)
    click.echo(f"policy {name} deleted")


@policy.command("client")
@HOME
@click.argument("action", type=click.Choice(["add", "remove"]))
@click.argument("name")
@click.argument("host")
def policy_client(home: str, action: str, name: str, host: str) -> None:
    """Add or remove a client of a policy (bpplclients)."""
    _guard(_catalog(home).set_policy_client, name, host, action == "add")
    click.echo(f"client {host} {'added to' if action == 'add' else 'removed from'} {name}")


@policy.command("include")
@HOME
@click.argument("action", type=click.Choice(["add", "remove"]))
@click.argument("name")
@click.argument("script")
def policy_include(home: str, action: str, name: str, script: str) -> None:
    """Add or remove a backup selection — a script the client daemon runs (bpplinclude)."""
    _guard(_catalog(home).set_policy_include, name, script, action == "add")
    click.echo(f"{script} {'added to' if action == 'add' else 'removed from'} {name}")


@policy.command("schedule")
@HOME
@click.argument("name")
@click.argument("label")
@click.option("--type", "kind", type=click.Choice(["full", "application"]), default="full",
              show_default=True, help="Automatic Full, or Application Backup (user-directed).")
@click.option("--frequency", default=None, help="Run when the last success is this old: 1d, 12h.")
@click.option("--calendar", default=None, help="Run on these days: MON,WED,FRI.")
@click.option("--window", "windows", nargs=3, multiple=True, metavar="DAY START DURATION",
              help="An open window, e.g. --window all 22:00 8h or --window sun 00:00 24h.")
@click.option("--retention", type=click.IntRange(0, 100), default=1, show_default=True,
              help="Retention level (0: 1 week, 1: 2 weeks, ... 8: 1 year, 9: infinity).")
@click.option("--delete", is_flag=True, help="Delete the schedule instead.")
def policy_schedule(home: str, name: str, label: str, kind: str, frequency: str | None,
                    calendar: str | None, windows: tuple[tuple[str, str, str], ...],
                    retention: int, delete: bool) -> None:
    """Add, replace or delete a schedule of a policy (bpplsched)."""
    catalog = _catalog(home)
    if delete:
        _guard(catalog.delete_schedule, name, label)
        click.echo(f"schedule {label} deleted from {name}")
        return
    try:
        seconds = schedule.parse_duration(frequency) if frequency else 0
        days = ",".join(d.strip().upper()[:3] for d in (calendar or "").split(",") if d.strip())
        if any(d not in schedule.DAYS for d in days.split(",") if d):
            raise ValueError(f"{calendar!r} names a day that is not MON..SUN")
        wins = schedule.windows_from_specs(windows) if windows else schedule.ALWAYS
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if kind == "full" and not seconds and not days:
        raise click.BadParameter("an automatic schedule needs --frequency or --calendar")
    _guard(catalog.set_schedule, name, label,
           sched_type=SCHED_FULL if kind == "full" else SCHED_APPLICATION,
           retention_level=retention, frequency=seconds, calendar=days,
           windows=schedule.dump_windows(wins))
    click.echo(f"schedule {label} set in {name}")


@click.command()
@HOME
@click.option("--backupid", required=True, help="The image's backup ID (client_ctime).")
@click.option("-d", "date", required=True,
              help="The new expiration: 0 (now), infinity, or a date 'YYYY-MM-DD HH:MM'.")
def expire(home: str, backupid: str, date: str) -> None:
    """Change an image's expiration, like bpexpdate; 0 expires it now."""
    if date == "0":
        when = int(dt.datetime.now(dt.timezone.utc).timestamp())
    elif date.lower() == "infinity":
        when = INFINITY
    else:
        try:
            when = int(dt.datetime.fromisoformat(date).astimezone().timestamp())
        except ValueError:
            raise click.BadParameter(f"{date!r} is not 0, infinity or a date") from None
    if not _catalog(home).set_expiration(backupid, when):
        raise click.ClickException(f"no image has backup ID {backupid}")
    click.echo(f"{backupid} expires {'now' if date == '0' else date}; the server's cleanup "
               "removes expired images and frees their storage")


@click.group()
def stu() -> None:
    """Storage units (bpstulist, bpstuadd, bpstumodify)."""


@stu.command("list")
@HOME
@click.option("--json", "as_json", is_flag=True)
def stu_list(home: str, as_json: bool) -> None:
    rows = _catalog(home).list_storage_units()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']}  kind={r['kind']}  path={r['path']}  max_jobs={r['max_jobs']}")


@stu.command("add")
@HOME
@click.argument("name")
@click.option("--path", required=True, help="The directory the unit writes to.")
@click.option("--kind", type=click.Choice(["disk", "dedup"]), default="disk", show_default=True,
              help="disk: one file per image; dedup: a deduplicating, compressing, "
                   "encrypting pool (its key goes to HOME/keys/NAME.key).")
@click.option("--max-jobs", type=click.IntRange(1, 1000), default=16, show_default=True)
def stu_add(home: str, name: str, path: str, kind: str, max_jobs: int) -> None:
    import os

    from openxbsa.errors import OpenXBSAError
    from openxbsa.storage import open_unit

    try:
        check_name("storage unit", name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    row = {"name": name, "kind": kind, "path": os.path.abspath(path)}
    if _catalog(home).storage_unit(name) is not None:
        raise click.ClickException(f"storage unit {name} already exists")
    try:
        unit = open_unit(row, home)       # creates the directory (and a pool and its key)
    except (OpenXBSAError, OSError) as exc:
        raise click.ClickException(f"storage unit {name} cannot use {path}: "
                                   f"{getattr(exc, 'message', exc)}") from None
    _guard(_catalog(home).set_storage_unit, name, kind=kind, path=row["path"],
           max_jobs=max_jobs, create=True)
    click.echo(f"storage unit {name} added")
    if kind == "dedup":
        click.echo(f"its key is {unit.key_path}: keep a copy of it apart from the pool; "
                   "without it nothing in the pool can be restored")


@stu.command("modify")
@HOME
@click.argument("name")
@click.option("--max-jobs", type=click.IntRange(1, 1000), required=True)
def stu_modify(home: str, name: str, max_jobs: int) -> None:
    catalog = _catalog(home)
    unit = catalog.storage_unit(name)
    if unit is None:
        raise click.ClickException(f"storage unit {name} does not exist")
    catalog.set_storage_unit(name, kind=unit["kind"], path=unit["path"], max_jobs=max_jobs,
                             create=False)
    click.echo(f"storage unit {name} modified")


@click.group()
def config() -> None:
    """The whole configuration (storage units, policies, schedules) as one TOML file."""


@config.command("export")
@HOME
@click.argument("path", type=click.Path(dir_okay=False, writable=True, allow_dash=True))
def config_export(home: str, path: str) -> None:
    text = export_toml(_catalog(home))
    if path == "-":
        click.echo(text, nl=False)
    else:
        try:
            with open(path, "w") as f:
                f.write(text)
        except OSError as exc:
            raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
        click.echo(f"configuration written to {path}")


@config.command("import")
@HOME
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def config_import(home: str, path: str) -> None:
    """Create or replace the policies and storage units the file describes."""
    try:
        data = load_toml(path)
    except ConfigFileError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:              # gone since click checked that it exists
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    try:
        count = import_config(_catalog(home), data)
    except (KeyError, ValueError, TypeError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    click.echo(f"{count} policies imported")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)          # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def export_toml(catalog: Any) -> str:
    lines = ["# OpenXBSA configuration: openxbsa config import FILE", ""]
    for u in catalog.list_storage_units():
        lines += ["[[storage_unit]]"] + [f"{k} = {_toml(u[k])}" for k in ("name", "kind", "path", "max_jobs")] + [""]
    for p in catalog.list_policies():
        lines.append("[[policy]]")
        for k in ("name", "active", "keyword", "priority", "stunit", "limit_jobs",
                  "multiple_streams", "clients", "include"):
            lines.append(f"{k} = {_toml(p[k])}")
        lines.append("")
        for sch in p["schedules"]:
            lines.append("[[policy.schedule]]")
            lines.append(f"name = {_toml(sch['name'])}")
            lines.append(f"type = {_toml('application' if sch['sched_type'] == SCHED_APPLICATION else 'full')}")
            lines.append(f"retention_level = {sch['retention_level']}")
            lines.append(f"frequency = {sch['frequency']}")
            lines.append(f"calendar = {_toml(sch['calendar'])}")
            lines.append(f"windows = {_toml([list(w) for w in schedule.parse_windows(sch['windows'])])}")
            lines.append("")
    return "\n".join(lines)


_UNIT_KEYS = {"name", "kind", "path", "max_jobs"}
_POLICY_KEYS = {"name", "active", "keyword", "priority", "stunit", "limit_jobs",
                "multiple_streams", "clients", "include", "schedule"}
_SCHEDULE_KEYS = {"name", "type", "retention_level", "frequency", "calendar", "windows"}


def _checked(where: str, check: Any, value: Any) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _checked_config(catalog: Any, data: dict[str, Any]
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The storage units and policies of a configuration file, every field checked, with
    defaults filled in: ValueError names the first problem, before anything changes."""
    unknown = set(data) - {"storage_unit", "policy"}
    if unknown:
        raise ValueError(f"unknown top-level keys {', '.join(sorted(unknown))} "
                         "(the file has [[storage_unit]] and [[policy]] tables)")
    top = Fields("", data)
    units = []
    for u in top.tables("storage_unit", _UNIT_KEYS):
        name = check_name("storage unit", u.get("name"))
        where = f"storage unit {name}"
        get = Fields(f"{where}: ", u)
        kind = get.text("kind", "disk")
        if kind not in ("disk", "dedup"):
            raise ValueError(f"{where}: kind is disk or dedup, not {kind!r}")
        path = get.text("path", "", empty=True)
        if not path.startswith("/"):
            raise ValueError(f"{where}: path must be an absolute directory, not {path!r}")
        units.append({"name": name, "kind": kind, "path": path,
                      "max_jobs": get.count("max_jobs", 16, 1, 1000)})
    known_units = {u["name"] for u in catalog.list_storage_units()} | {u["name"] for u in units}
    policies = []
    for p in top.tables("policy", _POLICY_KEYS):
        name = check_name("policy", p.get("name"))
        where = f"policy {name}"
        get = Fields(f"{where}: ", p)
        stunit = get.text("stunit", "disk-default")
        if stunit not in known_units:
            raise ValueError(f"{where}: storage unit {stunit} does not exist")
        schedules = []
        for sch in get.tables("schedule", _SCHEDULE_KEYS):
            label = check_name("schedule", sch.get("name"))
            at = f"{where}, schedule {label}"
            sget = Fields(f"{at}: ", sch)
            kind = sget.text("type", "full")
            if kind not in ("full", "application"):
                raise ValueError(f"{at}: type is full or application")
            windows = sch.get("windows", schedule.ALWAYS)
            if not isinstance(windows, list) or len(windows) != 7 or not all(
                    isinstance(w, list | tuple) and len(w) == 2
                    and all(type(x) is int for x in w)
                    and 0 <= w[0] < 86400 and 0 <= w[1] <= 7 * 86400 for w in windows):
                raise ValueError(f"{at}: windows need seven [start, duration] pairs of "
                                 "seconds, Sunday first (start under 86400, at most a week)")
            calendar = sget.text("calendar", "", empty=True)
            if any(d not in schedule.DAYS for d in calendar.split(",") if d):
                raise ValueError(f"{at}: calendar {calendar!r} names a day that is not "
                                 "SUN..SAT")
            schedules.append({
                "name": label, "sched_type": SCHED_FULL if kind == "full" else SCHED_APPLICATION,
                "retention_level": sget.count("retention_level", 1, 0, 100),
                "frequency": sget.count("frequency", 0, 0, 2**31 - 1),
                "calendar": calendar, "windows": schedule.dump_windows(
                    [tuple(w) for w in windows])})
        policies.append({
            "name": name, "stunit": stunit, "schedules": schedules,
            "keyword": get.text("keyword", "", empty=True),
            "priority": get.count("priority", 0, 0, 99999),
            "limit_jobs": get.count("limit_jobs", 0, 0, 999),
            "active": get.flag("active", True),
            "multiple_streams": get.flag("multiple_streams", False),
            "clients": [_checked(where, check_client, c)
                        for c in get.names("clients", what="non-empty strings")],
            "include": [_checked(where, check_script, c)
                        for c in get.names("include", what="non-empty strings")]})
    return units, policies


def import_config(catalog: Any, data: dict[str, Any]) -> int:
    """Apply a configuration file: the whole file is checked first, so a mistake anywhere
    in it changes nothing."""
    units, policies = _checked_config(catalog, data)
    for u in units:
        create = catalog.storage_unit(u["name"]) is None
        catalog.set_storage_unit(u["name"], kind=u["kind"], path=u["path"],
                                 max_jobs=u["max_jobs"], create=create)
    existing = {p["name"] for p in catalog.list_policies()}
    for p in policies:
        if p["name"] in existing:
            catalog.delete_policy(p["name"])
        catalog.add_policy(p["name"], keyword=p["keyword"], priority=p["priority"],
                           limit_jobs=p["limit_jobs"], stunit=p["stunit"], active=p["active"],
                           multiple_streams=p["multiple_streams"])
        for host in p["clients"]:
            catalog.set_policy_client(p["name"], host, True)
        for script in p["include"]:
            catalog.set_policy_include(p["name"], script, True)
        for sch in p["schedules"]:
            catalog.set_schedule(p["name"], sch.pop("name"), **sch)
    return len(policies)
