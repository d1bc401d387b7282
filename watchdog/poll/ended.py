"""The jobs that ended since a time: what budgets need to count usage inside their windows.

One keyset scan per list type, like a poll (`poll.scan`), with the conditions
`status.in=FINISHED,CANCELLED,FAILED` and `ended.gt=<since>` (the Jobs service sets `ended` when a
job reaches a terminal status, `JobsDao.updateEnded`; timestamp conditions are compared as UTC
times, `SearchUtils.convertValuesToTimestamps`). Each job's run ends at its `remoteEnded`; a job
whose `remoteEnded` is not set (it never ran, or failed before its end was recorded: not
established which) ends at `ended`, and a job without either is skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from watchdog.jobs import TERMINAL_STATUSES, Job, parse_job, parse_timestamp
from watchdog.poll.scan import poll_jobs
from watchdog.state.snapshot import EndedJob

if TYPE_CHECKING:
    from collections.abc import Mapping

    from watchdog.tapis.client import TapisClient

__all__ = ["ENDED_FIELDS", "ended_job", "search_ended"]

ENDED_FIELDS: tuple[str, ...] = (
    "uuid",
    "status",
    "name",
    "owner",
    "appId",
    "execSystemId",
    "execSystemLogicalQueue",
    "nodeCount",
    "tags",
    "created",
    "remoteStarted",
    "remoteEnded",
    "ended",
)


def since_condition(since: datetime) -> str:
    """`ended.gt`'s value: whole seconds in UTC (a job ended within that second is read again,
    and kept once)."""
    return since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def search_ended(
    client: TapisClient, since: datetime, *, list_type: str, page_size: int
) -> tuple[EndedJob, ...]:
    """Every job of the identity that ended after `since`, whole, or an error and nothing.

    Raises:
        PollError: a page could not be fetched (after the client's retries).
        TapisAuthError: the identity can no longer log in.
    """
    ends: dict[str, datetime] = {}

    def parse(record: Mapping[str, Any]) -> Job:
        job = parse_job(record)
        end = _time(record.get("remoteEnded")) or _time(record.get("ended"))
        if end is not None:
            ends[job.uuid] = end
        return job

    result = await poll_jobs(
        client,
        statuses=sorted(TERMINAL_STATUSES),
        list_type=list_type,
        page_size=page_size,
        fields=ENDED_FIELDS,
        parse=parse,
        conditions={"ended.gt": since_condition(since)},
    )
    return tuple(ended_job(job, ends[job.uuid]) for job in result.jobs if job.uuid in ends)


def _time(value: Any) -> datetime | None:
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def ended_job(job: Job, end: datetime) -> EndedJob:
    """The ended job kept for the budgets' windows, of `job`, which ended at `end`."""
    return EndedJob(
        uuid=job.uuid,
        status=job.status,
        remote_started=job.remote_started,
        remote_ended=end,
        node_count=job.node_count,
        app_id=job.app_id,
        exec_system_id=job.exec_system_id,
        queue=job.queue,
        owner=job.owner,
        name=job.name,
        tags=job.tags,
        created=job.created,
    )
