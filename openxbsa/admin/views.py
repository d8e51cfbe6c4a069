"""Read-only admin views over the catalog, as plain records (bpdbjobs, bpimagelist, bplist)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from openxbsa import status
from openxbsa.catalog.store import Catalog
from openxbsa.server.config import ServerConfig

JOB_TYPES = {0: "Backup", 2: "Restore", 3: "Verify", 17: "Image Cleanup"}
JOB_STATES = {0: "Queued", 1: "Active", 2: "Re-Queued", 3: "Done", 4: "Suspended", 5: "Incomplete"}
SCHED_TYPES = {0: "FULL", 2: "UBAK", 3: "UARC"}


def open_catalog(home: str) -> Catalog:
    """The catalog of a server home, migrated to the current schema."""
    config = ServerConfig.load(home)
    os.makedirs(config.home, exist_ok=True)
    catalog = Catalog(config.catalog_url)
    catalog.migrate()
    catalog.bootstrap(config.storage_path)
    return catalog


def _iso(ts: int | None) -> str:
    return "" if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat()


def jobs(catalog: Catalog, job_ids: list[int] | None = None) -> list[dict[str, Any]]:
    out = []
    now = int(dt.datetime.now(dt.timezone.utc).timestamp())
    for j in catalog.list_jobs(job_ids):
        elapsed = (j["ended"] or now) - j["started"]
        out.append({
            "jobid": j["job_id"], "jobtype": j["job_type"],
            "type": JOB_TYPES.get(j["job_type"], str(j["job_type"])),
            "state": j["state"], "state_name": JOB_STATES.get(j["state"], str(j["state"])),
            "status": j["status"], "policy": j["policy"], "schedule": j["schedule"],
            "client": j["client"], "server": j["server"], "started": j["started"],
            "elapsed": elapsed, "ended": j["ended"], "stunit": j["stunit"],
            "try": j["try_count"], "kbytes": j["kbytes"], "files": j["files"],
            "owner": j["owner"], "parentjob": j["parent_job"], "backupid": j["backup_id"],
            "current_object": j["current_object"],
            # times are whole seconds: a job that moved data within one counts one second
            "kbpersec": int(j["kbytes"] / max(elapsed, 1)) if j["kbytes"] else 0,
            "queuereason": j.get("queue_reason"),
            "schedtype": j.get("sched_type"), "jobpid": j.get("pid"),
            "scheduled": bool(j.get("scheduled")), "streams": j.get("streams") or 0,
            **transfer(j),
        })
    return out


# bpdbjobs -most_columns: the domain doc (§2.4) names columns 1-60; recent releases print
# 64, which parsers of its output check for. Columns we have no value for stay empty.
MOST_COLUMNS = 64
POLICY_TYPE_DATASTORE = 24


def _field(value: Any) -> str:
    """One bpdbjobs field: empty when unknown; a comma or backslash inside is escaped with a
    backslash, so that the line still splits on bare commas."""
    if value is None:
        return ""
    return str(value).replace("\\", "\\\\").replace(",", "\\,")


def most_columns(job: dict[str, Any]) -> str:
    """A job (as ``jobs`` gives it) as the comma-separated line of ``bpdbjobs -report
    -most_columns``, columns in NetBackup's order; what this service does not have (robot,
    vault, retention of the job, ...) is left empty."""
    active = job["state"] in (0, 1, 2)
    operation = None
    if job["state"] == 1:                      # NetBackup's operation codes of active jobs
        operation = 27 if job["streams"] or (job["scheduled"] and not job["parentjob"]) \
            else {0: 3, 2: 14, 3: 13}.get(job["jobtype"])
    cols: dict[int, Any] = {
        1: job["jobid"], 2: job["jobtype"], 3: job["state"],
        4: None if active else job["status"], 5: job["policy"], 6: job["schedule"],
        7: job["client"], 8: job["server"], 9: job["started"],
        10: f"{job['elapsed']:010d}", 11: job["ended"], 12: job["stunit"], 13: job["try"],
        14: operation, 15: job["kbytes"], 16: job["files"], 17: job["current_object"],
        19: job["jobpid"], 20: job["owner"],
        22: POLICY_TYPE_DATASTORE if job["policy"] else None, 23: job["schedtype"],
        26: job["server"], 32: 0, 33: job["try"], 34: job["parentjob"] or 0,
        35: job["kbpersec"], 47: 0, 48: 0,
        49: int(job["scheduled"] and not active and job["parentjob"] is None),
        52: job["backupid"], 53: int(active), 57: job["queuereason"],
        58: job["dedup_rate"],
    }
    return ",".join(_field(cols.get(i)) for i in range(1, MOST_COLUMNS + 1))


def transfer(row: dict[str, Any]) -> dict[str, Any]:
    """Bytes received, new after deduplication and stored, with NetBackup's deduplication
    rate (share of received bytes that were already stored) and the overall reduction."""
    from openxbsa.storage.base import dedup_rate

    received, new, stored = (row.get("bytes_received"), row.get("bytes_after_dedup"),
                             row.get("bytes_stored"))
    out: dict[str, Any] = {"bytes_received": received, "bytes_after_dedup": new,
                           "bytes_stored": stored, "dedup_rate": None, "reduction": None,
                           "stored_kb": None if stored is None else (stored + 1023) // 1024}
    out["dedup_rate"] = dedup_rate(received, new)
    if received and stored:
        out["reduction"] = round(received / stored, 2)
    return out


def job_summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    done = [r for r in rows if r["state"] == 3]
    return {
        "Queued": sum(r["state"] == 0 for r in rows),
        "Requeued": sum(r["state"] == 2 for r in rows),
        "Active": sum(r["state"] == 1 for r in rows),
        "Success": sum(r["status"] == 0 for r in done),
        "PartSucc": sum(r["status"] == 1 for r in done),
        "Failed": sum((r["status"] or 0) > 1 for r in done),
        "Incomplete": sum(r["state"] == 5 for r in rows),
        "Suspended": sum(r["state"] == 4 for r in rows),
        "Total": len(rows),
    }


def job_log(catalog: Catalog, job_id: int) -> list[dict[str, Any]]:
    return [{"time": _iso(e["time"]), "severity": e["severity"], "message": e["message"]}
            for e in catalog.job_log(job_id)]


def images(catalog: Catalog, client: str | None = None, backup_id: str | None = None
           ) -> list[dict[str, Any]]:
    return [{
        "backupid": i["backup_id"], "client": i["client"], "backup_time": i["ctime"],
        "policy": i["policy"], "schedule": i["schedule"],
        "sched_type": SCHED_TYPES.get(i["sched_type"], str(i["sched_type"])),
        "retention": i["retention_level"], "expiration": i["expiration"],
        "kbytes": i["kbytes"], "num_files": i["num_objects"], "keyword": i["keyword"],
        "jobid": i["job_id"], "stunit": i["stunit"], "media_id": i["media_id"],
        "owner": i["os_user"], **transfer(i),
    } for i in catalog.list_images(client, backup_id)]


def objects(catalog: Catalog, client: str | None = None, pattern: str = "*",
            backup_id: str | None = None) -> list[dict[str, Any]]:
    return [{
        "copyid": o["copy_id"], "backupid": o["backup_id"], "client": o["client_host"],
        "owner": o["os_user"], "objectspace": o["space_name"], "path": o["path_name"],
        "created": _iso(o["create_time"]), "size": o["size"], "copytype": o["copy_type"],
        "objecttype": o["object_type"], "resourcetype": o["resource_type"],
        "description": o["description"],
    } for o in catalog.list_objects(client, pattern, backup_id)]


def issue_secret(catalog: Catalog, host: str) -> str:
    return catalog.issue_secret(host)


def troubleshoot(code: str) -> dict[str, Any] | None:
    """The troubleshooting entry of a NetBackup status code ("196") or an XBSA return code
    ("BSA_RC_NO_MATCH", "rc:17", "0x11")."""
    from openxbsa.xbsa import _constants as C

    text = code.strip()
    rc: int | None = None
    if text.upper().startswith(("BSA_RC_", "NBBSA_RC_")):
        rc = getattr(C, text.upper(), None)
        if rc is None:
            return None
    elif text.lower().startswith(("rc:", "0x")):
        try:
            rc = int(text[3:] if text.lower().startswith("rc:") else text, 0)
        except ValueError:
            return None
    if rc is not None:
        if rc not in C.RC_NAMES:
            return None
        return {"kind": "XBSA return code", "code": rc, "name": C.RC_NAMES[rc],
                "meaning": C.RC_TEXT[rc], "action": status.RC_ACTIONS[rc]}
    if not text.isdigit():
        return None
    entry = status.describe(int(text))
    return {"kind": "NetBackup status", "code": entry.code, "name": entry.message,
            "meaning": entry.message, "action": entry.action}


ST_CANCELLED = 150


def cancel_job(catalog: Catalog, job_id: int) -> str:
    """bpdbjobs -cancel: a queued job ends now; an active one is stopped by the server."""
    job = catalog.job(job_id)
    if job is None:
        raise KeyError(f"job {job_id} does not exist")
    if job["state"] == 3:
        raise KeyError(f"job {job_id} is already done")
    if job["state"] == 0:
        catalog.finish_job(job_id, ST_CANCELLED)
        catalog.log_job(job_id, "info", "cancelled by the administrator while queued (status 150)")
        return "cancelled"
    catalog.update_job(job_id, cancel_requested=True)
    catalog.log_job(job_id, "info", "the administrator asked the job to stop")
    return "asked to stop; the server ends it within its scheduler interval"


def restart_job(catalog: Catalog, job_id: int) -> int:
    """bpdbjobs -restart: a finished scheduled run runs again as a new job."""
    job = catalog.job(job_id)
    if job is None:
        raise KeyError(f"job {job_id} does not exist")
    if not job["scheduled"] or job["state"] != 3:
        raise KeyError(f"job {job_id} is not a finished scheduled run")
    new = catalog.create_job(job_type=job["job_type"], state=0, policy=job["policy"],
                             schedule=job["schedule"], sched_type=job["sched_type"],
                             client=job["client"], server=job["server"], owner=job["owner"],
                             stunit=job["stunit"], scheduled=True,
                             queue_reason="waiting to be dispatched")
    catalog.log_job(new, "info", f"restart of job {job_id}")
    return new


def verify_image(catalog: Catalog, backup_id: str, home: str) -> dict[str, Any]:
    """bpverify: read every object of an image from its storage unit and check it (blake3
    checksum; on a dedup pool every chunk's authentication tag and ID) without restoring
    it; recorded as a Verify job (type 3). Reports exactly which objects are damaged."""
    from openxbsa.errors import OpenXBSAError
    from openxbsa.storage import StoredObject, open_unit

    imgs = catalog.list_images(backup_id=backup_id)
    if not imgs:
        raise KeyError(f"no image has backup ID {backup_id}")
    img = imgs[0]
    unit_row = catalog.storage_unit(img["stunit"])
    if unit_row is None:
        raise KeyError(f"storage unit {img['stunit']} does not exist")
    job_id = catalog.create_job(job_type=3, client=img["client"], owner="root",
                                policy=img["policy"], schedule=img["schedule"],
                                stunit=img["stunit"], backup_id=backup_id)
    try:
        unit = open_unit(unit_row, home)
    except OpenXBSAError as exc:
        catalog.log_job(job_id, "error", exc.message)
        catalog.finish_job(job_id, exc.status)
        raise
    memo: dict = {}
    results = []
    for o in catalog.list_objects(backup_id=backup_id):
        try:
            problem = unit.verify_object(
                img["location"], StoredObject(o["offset"], o["size"], o["checksum"]), memo)
        except OpenXBSAError as exc:
            problem = exc.message
        results.append({"copyid": o["copy_id"], "path": o["path_name"], "size": o["size"],
                        "ok": problem is None, "problem": problem})
        if problem:
            catalog.log_job(job_id, "error", f"{o['path_name']} (copy ID {o['copy_id']}): {problem}")
    damaged = [r for r in results if not r["ok"]]
    status = 85 if damaged else 0
    catalog.finish_job(job_id, status, files=len(results),
                       kbytes=sum(r["size"] for r in results) // 1024)
    catalog.log_job(job_id, "info" if not damaged else "error",
                    f"verified {len(results)} objects of {backup_id}: {len(damaged)} damaged")
    return {"backupid": backup_id, "job": job_id, "status": status, "objects": results}
