"""The second read of a poll: when jobs entered their status, from their Tapis histories.

RUNNING and QUEUED carry their entry time in the job record (`remoteStarted`, `remoteSubmitted`);
any other status's entry is in the job's history (`JOB_NEW_STATUS` events). The plan says which
jobs need it (`rules.poll_plan.jobs_needing_history`: no clock kept for this visit, and a rule that
could depend on it); this step fetches those histories concurrently (the client's limiter bounds
how many at once) before the plan, and the plan records what it learnt, so each visit to a status
costs one history fetch, across restarts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from watchdog.errors import JobRecordError, TapisError
from watchdog.jobs import status_entered_from_history

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from watchdog.jobs import Job
    from watchdog.tapis.client import TapisClient


async def fetch_status_entries(
    client: TapisClient, jobs: Sequence[Job], now: datetime
) -> dict[str, datetime]:
    """When each job entered its current status (job uuid → time), for those Tapis could tell.

    A job whose history Tapis could not give this poll is left out: its `in_status_over`
    conditions do not hold, and the next poll asks again. A history with no change into the
    status on record means the job has been in it since it was first seen here (`now`), which
    never overstates the time.
    """
    result: dict[str, datetime] = {}

    async def fetch(job: Job) -> None:
        try:
            history = await client.get_history(job.uuid)
            entered = status_entered_from_history(history, job.status)
        except (TapisError, JobRecordError):
            return
        result[job.uuid] = now if entered is None else entered

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(fetch, job)
    return result
