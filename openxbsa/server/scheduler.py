"""The policy scheduler and job dispatch (NetBackup's nbpem and nbjm for scheduled runs).

Each tick, on the server's wall clock:
1. expire: images past their expiration leave the catalog and their bytes are freed;
2. plan: every automatic schedule of an active DataStore policy that is due for a client
   gets a queued parent job — unless one is already queued or active (so a restart or a
   slow tick never duplicates work; what is due is derived from the catalog), and within
   NetBackup's attempts rule: a failed run is retried after the job retry delay, at most
   twice in twelve hours;
3. dispatch: queued runs start on their client's daemon within the limits (jobs per
   client, per policy), or say why they wait; a run still queued when its window closes
   ends with status 196.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openxbsa.catalog.store import JOB_ACTIVE, JOB_BACKUP, JOB_IMAGE_DELETE, JOB_QUEUED, SCHED_FULL
from openxbsa.server import schedule
from openxbsa.server.config import KEEP_JOBS_HOURS

if TYPE_CHECKING:
    from openxbsa.server.service import Server

log = logging.getLogger("openxbsa.scheduler")

ST_WINDOW_CLOSED = 196


@dataclass
class ClientLink:
    """A connected client daemon: the runs to start there go through its queue; ``send``
    (set by its session) writes to it, under ``lock``."""

    host: str
    runs: queue.Queue = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)
    send: Any = None


class Scheduler:
    def __init__(self, server: Server, interval: float, max_jobs_per_client: int,
                 attempts: int = 2, attempt_period: int = 12 * 3600, retry_delay: int = 600,
                 keep_jobs_hours: int = KEEP_JOBS_HOURS) -> None:
        self.server = server
        self.catalog = server.catalog
        self.interval = interval
        self.max_jobs_per_client = max_jobs_per_client
        self.attempts = attempts              # NetBackup: 2 tries ...
        self.attempt_period = attempt_period  # ... per 12 hours
        self.retry_delay = retry_delay        # job retry delay: 10 minutes
        self.keep_jobs_hours = keep_jobs_hours  # finished jobs kept (KEEP_JOBS_HOURS)
        self._cleaned = 0.0                   # when the job database was last cleaned
        self.links: dict[str, ClientLink] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._signalled: set[int] = set()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ client daemons
    def attach(self, host: str) -> ClientLink:
        with self.lock:
            link = ClientLink(host)
            self.links[host] = link
        log.info("client daemon of %s connected", host)
        self.wake()
        return link

    def detach(self, link: ClientLink) -> None:
        with self.lock:
            if self.links.get(link.host) is link:
                del self.links[link.host]
        log.info("client daemon of %s disconnected", link.host)

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Evaluate now rather than at the next interval (a daemon connected, a run ended)."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick(self.server.now())
            except Exception:   # the scheduler must outlive any one bad tick
                log.exception("scheduler tick failed")

    def tick(self, now: dt.datetime) -> None:
        self.cancel()
        self.expire(now)
        self.clean_jobs(now)
        self.server.maintain()
        self.plan(now)
        self.dispatch(now)
        self.finish_streamed()

    def finish_streamed(self) -> None:
        """A multi-stream run ends when its streams have: with the first failing status."""
        runs = self.catalog.open_scheduled_jobs()
        for parent in (j for j in runs if j["streams"] and j["state"] == JOB_ACTIVE):
            children = [self.catalog.job(c) for c in self.catalog.children(parent["job_id"])]
            if len(children) < parent["streams"] or any(c["state"] != 3 for c in children):
                continue
            status = next((c["status"] for c in children if c["status"] not in (0, None)), 0)
            self.server.jobs.finish(parent["job_id"], status, f"all {len(children)} streams ended")

    # ------------------------------------------------------------------ 0. cancel
    def cancel(self) -> None:
        """Stop the jobs an administrator cancelled: a run through its client daemon, an
        application's job by ending its session (everything it did is nullified)."""
        for j in self.catalog.cancel_requested():
            job_id = j["job_id"]
            if job_id in self._signalled:
                continue
            self._signalled.add(job_id)
            if j["streams"]:                  # a multi-stream run: stop its streams
                for child_id in self.catalog.children(job_id):
                    child = self.catalog.job(child_id)
                    if child and child["state"] == JOB_QUEUED:
                        self.server.jobs.finish(child_id, 150, "cancelled with its run")
                    elif child and child["state"] == JOB_ACTIVE:
                        self.catalog.update_job(child_id, cancel_requested=True)
                continue
            if j["scheduled"]:
                with self.lock:
                    link = self.links.get(j["client"])
                if link is not None and link.send is not None:
                    try:
                        link.send({"cancel": job_id})
                        continue
                    except OSError:
                        pass          # the daemon is gone: nothing runs there any more
            elif self.server.cancel_session(job_id):
                continue
            self.server.jobs.finish(job_id, 150, "cancelled by the administrator")

    def clean_jobs(self, now: dt.datetime) -> None:
        """Once an hour, forget finished jobs older than keep_jobs_hours (and than the
        attempt period, whose failed runs count against a schedule's attempts)."""
        stamp = now.timestamp()
        if stamp - self._cleaned < 3600:
            return
        self._cleaned = stamp
        keep = max(self.keep_jobs_hours * 3600, self.attempt_period)
        removed = self.catalog.clean_jobs(int(stamp) - keep)
        if removed:
            log.info("%d finished jobs older than %d hours removed from the job database",
                     removed, keep // 3600)

    # ------------------------------------------------------------------ 1. expire
    def expire(self, now: dt.datetime) -> None:
        expired = self.catalog.expired_images(int(now.timestamp()))
        if not expired:
            return
        job_id = self.server.jobs.start(job_type=JOB_IMAGE_DELETE, client=self.server.hostname,
                                        owner="root", message=f"{len(expired)} images expired")
        for img in expired:
            self.server.delete_image(img["id"])
            self.server.jobs.log(job_id, "info", f"image {img['backup_id']} expired and removed")
        self.server.jobs.finish(job_id, 0, "expired images removed", files=len(expired))

    # ------------------------------------------------------------------ 2. plan
    def plan(self, now: dt.datetime) -> None:
        open_runs = {(j["policy"], j["schedule"], j["client"])
                     for j in self.catalog.open_scheduled_jobs()}   # streams share the key
        for policy in self.catalog.list_policies():
            if not policy["active"] or policy["policy_type"] != 24 or not policy["include"]:
                continue
            for sched in policy["schedules"]:
                if sched["sched_type"] != SCHED_FULL:
                    continue
                windows = schedule.parse_windows(sched["windows"])
                for client in policy["clients"]:
                    key = (policy["name"], sched["name"], client)
                    if key in open_runs:
                        continue
                    last = self.catalog.last_success(*key)
                    if not self._may_try(key, last, now):
                        continue
                    last_dt = dt.datetime.fromtimestamp(last, now.tzinfo) if last else None
                    if schedule.is_due(windows, sched["frequency"], sched["calendar"], last_dt,
                                       now):
                        self._queue(policy, sched, client)

    def _may_try(self, key: tuple[str, str, str], last_success: int | None,
                  now: dt.datetime) -> bool:
        """NetBackup's schedule backup attempts: after a failure wait the job retry delay,
        and try at most ``attempts`` times in ``attempt_period`` (since the last success)."""
        since = int(now.timestamp()) - self.attempt_period
        if last_success is not None:
            since = max(since, last_success + 1)
        failures = self.catalog.failed_attempts(*key, since=since)
        if len(failures) >= self.attempts:
            return False
        return not failures or int(now.timestamp()) - max(failures) >= self.retry_delay

    def _split(self, parent: dict[str, Any], scripts: list[str], now: dt.datetime) -> None:
        """Allow multiple data streams: one child job per script, each dispatched (and
        limited) on its own; the parent only waits for them."""
        self.catalog.update_job(parent["job_id"], state=JOB_ACTIVE, queue_reason=None,
                                streams=len(scripts), started=int(now.timestamp()))
        for script in scripts:
            child = self.catalog.create_job(
                job_type=JOB_BACKUP, state=JOB_QUEUED, policy=parent["policy"],
                schedule=parent["schedule"], sched_type=parent["sched_type"],
                client=parent["client"], server=self.server.hostname, owner="root",
                stunit=parent["stunit"], scheduled=True, parent_job=parent["job_id"],
                current_object=script, queue_reason="waiting to be dispatched")
            self.server.jobs.log(child, "info", f"stream of job {parent['job_id']}: {script}")
        self.server.jobs.log(parent["job_id"], "info", f"{len(scripts)} streams started")

    def _queue(self, policy: dict[str, Any], sched: dict[str, Any], client: str) -> None:
        job_id = self.catalog.create_job(
            job_type=JOB_BACKUP, state=JOB_QUEUED, policy=policy["name"], schedule=sched["name"],
            sched_type=sched["sched_type"], client=client, server=self.server.hostname,
            owner="root", stunit=policy["stunit"], scheduled=True,
            queue_reason="waiting to be dispatched")
        self.server.jobs.log(job_id, "info", f"scheduled run of {policy['name']}/{sched['name']} "
                                             f"for {client} queued")

    # ------------------------------------------------------------------ 3. dispatch
    def dispatch(self, now: dt.datetime) -> None:
        runs = self.catalog.open_scheduled_jobs()
        policies = {p["name"]: p for p in self.catalog.list_policies()}
        active_by_policy: dict[str, int] = {}
        active_by_client: dict[str, int] = {}
        for j in runs:
            if j["state"] == JOB_ACTIVE and not j["streams"]:   # a multi-stream parent: its
                active_by_policy[j["policy"]] = active_by_policy.get(j["policy"], 0) + 1
                active_by_client[j["client"]] = active_by_client.get(j["client"], 0) + 1
        for j in runs:
            if j["state"] != JOB_QUEUED:
                continue
            policy = policies.get(j["policy"])
            sched = next((s for s in policy["schedules"] if s["name"] == j["schedule"]), None) \
                if policy else None
            if policy is None or sched is None:
                self.server.jobs.finish(j["job_id"], 197, "the schedule no longer exists")
                continue
            if not schedule.window_open(schedule.parse_windows(sched["windows"]), now):
                self.server.jobs.finish(j["job_id"], ST_WINDOW_CLOSED,
                                        "the backup window closed while the run was queued")
                continue
            scripts = [j["current_object"]] if j["parent_job"] else policy["include"]
            if not j["parent_job"] and policy["multiple_streams"] and len(scripts) > 1:
                self._split(j, scripts, now)
                continue
            reason = None
            limit = policy["limit_jobs"]
            if limit and active_by_policy.get(policy["name"], 0) >= limit:
                reason = f"limit of {limit} jobs for policy {policy['name']} reached"
            elif active_by_client.get(j["client"], 0) >= self.max_jobs_per_client:
                reason = f"maximum jobs per client ({self.max_jobs_per_client}) reached"
            else:
                with self.lock:
                    link = self.links.get(j["client"])
                if link is None:
                    reason = f"the client daemon of {j['client']} is not connected"
                else:
                    self.catalog.update_job(j["job_id"], state=JOB_ACTIVE, queue_reason=None,
                                            started=int(now.timestamp()))
                    self.server.jobs.log(j["job_id"], "info",
                                         f"started on {j['client']}: {len(scripts)} script(s)")
                    link.runs.put({"job": j["job_id"], "scripts": scripts,
                                   "policy": policy["name"], "schedule": sched["name"]})
                    active_by_policy[policy["name"]] = active_by_policy.get(policy["name"], 0) + 1
                    active_by_client[j["client"]] = active_by_client.get(j["client"], 0) + 1
                    continue
            if reason != j["queue_reason"]:
                self.catalog.update_job(j["job_id"], queue_reason=reason)
