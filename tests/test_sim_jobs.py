"""Job records, status, history, cancel, sendEvent, hide: the simulator through real tapipy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from tapipy.errors import (
    BadRequestError,
    BaseTapyException,
    InternalServerError,
    NotFoundError,
    UnauthorizedError,
)

from watchdog.sim.schema import INT_FIELDS, JSON_STRING_FIELDS, TIMESTAMP_FIELDS

STRING_FIELDS = (  # noqa: SIM905 - reads like the facts page
    "uuid name owner tenant description status lastMessage appId appVersion jobType execSystemId "
    "execSystemExecDir execSystemInputDir execSystemOutputDir execSystemLogicalQueue "
    "archiveSystemId archiveSystemDir remoteJobId remoteQueue createdby createdbyTenant"
).split()

FLEET = {
    "users": {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "ops": "ops-pw"},
    "admins": ["ops"],
    "cancel_delay": "30s",
    "jobs": [
        {"uuid": "run-007", "status": "RUNNING", "remoteStarted": "-13h", "nodeCount": 4,
         "tags": ["overnight"], "inputs": ["tapis://corral/data/in.txt"], "app_args": ["-n 4"],
         "env": {"MODE": "fast"}},
        {"uuid": "bob-007", "status": "RUNNING", "owner": "bob", "shared_with": ["alice"]},
        {"uuid": "made-007", "status": "QUEUED", "owner": "bob", "createdby": "alice"},
        {"uuid": "done-007", "status": "FINISHED", "remoteStarted": "-3h", "ended": "-1h"},
        {"uuid": "stubborn-007", "status": "RUNNING", "cancel": "ignore_first"},
        {"uuid": "deaf-007", "status": "RUNNING", "cancel": "ignore"},
        {"uuid": "quick-007", "status": "QUEUED", "cancel_delay": "1s"},
    ],
}  # fmt: skip


@pytest.fixture
def env(make_sim, tapis):
    sim, url = make_sim(FLEET)
    return sim, (lambda user: tapis(sim, url, user)), tapis(sim, url, "alice")


def _ts(text: str) -> datetime:
    assert text.endswith("Z")
    return datetime.fromisoformat(text)


def test_get_job_is_a_complete_record_with_tapis_types(env):
    sim, _, client = env
    job = client.jobs.getJob(jobUuid="run-007")
    raw = sim.job("run-007")
    for name in STRING_FIELDS:
        assert isinstance(raw[name], str), name
    for name in INT_FIELDS - {"id"}:
        assert isinstance(raw[name], int), name
    for name in ("mpi", "visible", "archiveOnAppError", "dynamicExecSystem"):
        assert isinstance(raw[name], bool), name
    for name in TIMESTAMP_FIELDS - {"ended", "remoteEnded"}:
        _ts(raw[name])
    assert raw["ended"] is None
    assert raw["remoteEnded"] is None
    for name in JSON_STRING_FIELDS - {"execSystemConstraints"}:
        assert isinstance(raw[name], str), name
        json.loads(raw[name])
    assert job.tags == ["overnight"]
    assert job.nodeCount == 4
    started = _ts(job.remoteStarted)
    assert timedelta(hours=12, minutes=59) < sim.now() - started < timedelta(hours=13, minutes=1)
    assert _ts(job.created) <= _ts(job.remoteSubmitted) <= started


def test_json_string_fields_hold_inputs_args_and_tapis_env(env):
    _, _, client = env
    job = client.jobs.getJob(jobUuid="run-007")
    inputs = json.loads(job.fileInputs)
    assert inputs[0]["sourceUrl"] == "tapis://corral/data/in.txt"
    assert inputs[0]["targetPath"] == "in.txt"
    pset = json.loads(job.parameterSet)
    assert [a["arg"] for a in pset["appArgs"]] == ["-n 4"]
    env_vars = {e["key"]: e["value"] for e in pset["envVariables"]}
    assert env_vars["MODE"] == "fast"
    assert env_vars["_tapisJobUUID"] == "run-007"
    assert env_vars["_tapisExecSystemId"] == job.execSystemId
    assert set(pset) >= {"containerArgs", "schedulerOptions", "archiveFilter"}


def test_status_and_history_are_coherent(env):
    _, _, client = env
    status = client.jobs.getJobStatus(jobUuid="done-007")
    assert (status.status, status.condition) == ("FINISHED", "NORMAL_COMPLETION")
    history = client.jobs.getJobHistory(jobUuid="done-007")
    assert all(e.event == "JOB_NEW_STATUS" for e in history)
    assert [e.eventDetail for e in history] == [
        "PENDING", "PROCESSING_INPUTS", "STAGING_INPUTS", "STAGING_JOB", "SUBMITTING_JOB",
        "QUEUED", "RUNNING", "ARCHIVING", "FINISHED",
    ]  # fmt: skip
    times = [_ts(e.created) for e in history]
    assert times == sorted(times)
    job = client.jobs.getJob(jobUuid="done-007")
    assert times[6] == _ts(job.remoteStarted)
    assert times[-1] == _ts(job.ended)


def test_history_pages_with_limit_and_skip(env):
    _, _, client = env
    full = client.jobs.getJobHistory(jobUuid="done-007")
    page, debug = client.jobs.getJobHistory(jobUuid="done-007", limit=3, skip=2, _tapis_debug=True)
    assert [e.eventDetail for e in page] == [e.eventDetail for e in full[2:5]]
    meta = debug.response.json()["metadata"]
    assert (meta["recordCount"], meta["recordLimit"], meta["recordsSkipped"]) == (3, 3, 2)


def test_explicit_history_from_the_fleet(make_sim, tapis):
    sim, url = make_sim(
        {
            "jobs": [
                {
                    "uuid": "h-007",
                    "status": "BLOCKED",
                    "history": [["PENDING", "-3h"], ["BLOCKED", "-2h"]],
                }
            ]
        }
    )
    history = tapis(sim, url).jobs.getJobHistory(jobUuid="h-007")
    assert [e.eventDetail for e in history] == ["PENDING", "BLOCKED"]
    assert sim.now() - _ts(history[1].created) > timedelta(hours=1, minutes=59)


def test_an_unknown_job_answers_each_endpoint_as_its_resource_does(env):
    """getJobStatus/getJobHistory: 404 TAPIS_NOT_FOUND (a "success" envelope naming the uuid);
    getJob: 500, the sharing wrapper of JobsImpl.getJobByUuid rethrows the not-found;
    cancelJob: 400 JOBS_JOB_SELECT_UUID_ERROR; sendEvent: 400 once the body is valid."""
    _, _, client = env
    for call in (client.jobs.getJobStatus, client.jobs.getJobHistory):
        with pytest.raises(NotFoundError) as err:
            call(jobUuid="nope-007")
        body = err.value.response.json()
        assert body["message"].startswith("TAPIS_NOT_FOUND")
        assert (body["status"], body["result"]) == ("success", {"name": "nope-007"})
    with pytest.raises(InternalServerError) as err:
        client.jobs.getJob(jobUuid="nope-007")
    assert err.value.message.startswith("JOBS_JOB_SELECT_UUID_ERROR")
    with pytest.raises(BadRequestError) as err:
        client.jobs.cancelJob(jobUuid="nope-007")
    assert err.value.message.startswith("JOBS_JOB_SELECT_UUID_ERROR")
    with pytest.raises(BadRequestError) as err:
        client.jobs.sendEvent(jobUuid="nope-007", eventData="hello")
    assert err.value.message.startswith("JOBS_JOB_SELECT_UUID_ERROR")


def test_a_hidden_job_is_a_404_for_status_and_history_but_not_for_get_job(env):
    _, _, client = env
    client.jobs.hideJob(jobUuid="run-007")
    for call in (client.jobs.getJobStatus, client.jobs.getJobHistory):
        with pytest.raises(NotFoundError) as err:
            call(jobUuid="run-007")
        assert err.value.message.startswith("JOBS_JOB_NOT_VISIBLE")
    assert client.jobs.getJob(jobUuid="run-007").visible is False


def test_history_paging_goes_through_the_shared_filter(env):
    _, _, client = env
    everything = client.jobs.getJobHistory(jobUuid="run-007")
    assert len(everything) > 2
    assert [e.created for e in client.jobs.getJobHistory(jobUuid="run-007", limit=1, skip=1)] == [
        everything[1].created
    ]
    with pytest.raises(BadRequestError) as err:
        client.jobs.getJobHistory(jobUuid="run-007", _tapis_query_parameters={"limit": "x"})
    assert err.value.response.text.startswith("TAPIS_QUERY_PARAM_NOTINT")


def test_other_users_job_is_a_json_401_mismatched_owner(env):
    _, login, _ = env
    carol = login("carol")
    for call in (carol.jobs.getJob, carol.jobs.getJobStatus, carol.jobs.cancelJob):
        with pytest.raises(UnauthorizedError) as err:
            call(jobUuid="run-007")
        assert isinstance(err.value.message, str)
        assert err.value.message.startswith("JOBS_MISMATCHED_OWNER")


def test_owner_creator_and_admin_may_cancel_sharee_may_only_read(env):
    sim, login, alice = env
    assert alice.jobs.getJob(jobUuid="bob-007").owner == "bob"
    with pytest.raises(UnauthorizedError):
        alice.jobs.cancelJob(jobUuid="bob-007")
    assert alice.jobs.cancelJob(jobUuid="made-007").message.startswith("JOBS_JOB_CANCEL_ACCEPTED")
    assert login("ops").jobs.cancelJob(jobUuid="bob-007") is not None
    assert login("bob").jobs.cancelJob(jobUuid="bob-007") is not None
    assert sim.cancels_received("bob-007") == 2


def test_cancel_lands_later_as_cancelled_by_user(env):
    sim, _, client = env
    result = client.jobs.cancelJob(jobUuid="run-007")
    assert (
        result.message
        == "JOBS_JOB_CANCEL_ACCEPTED Request to cancel job run-007 has been accepted."
    )
    assert client.jobs.getJobStatus(jobUuid="run-007").status == "RUNNING"
    sim.advance(29)
    assert client.jobs.getJobStatus(jobUuid="run-007").status == "RUNNING"
    sim.advance(2)
    status = client.jobs.getJobStatus(jobUuid="run-007")
    assert (status.status, status.condition) == ("CANCELLED", "CANCELLED_BY_USER")
    job = client.jobs.getJob(jobUuid="run-007")
    assert job.ended == job.lastUpdated
    assert _ts(job.ended) - _ts(job.remoteStarted) > timedelta(hours=13)
    last = client.jobs.getJobHistory(jobUuid="run-007")[-1]
    assert (last.event, last.eventDetail, last.created) == (
        "JOB_NEW_STATUS",
        "CANCELLED",
        job.ended,
    )


def test_cancel_of_terminal_job_is_409(env):
    _, _, client = env
    with pytest.raises(BaseTapyException) as err:
        client.jobs.cancelJob(jobUuid="done-007")
    assert type(err.value) is BaseTapyException
    assert err.value.response.status_code == 409
    assert err.value.message.startswith("JOBS_JOB_IN_TERMINAL_STATE")


def test_per_job_cancel_delay(env):
    sim, _, client = env
    client.jobs.cancelJob(jobUuid="quick-007")
    sim.advance(1.5)
    assert client.jobs.getJobStatus(jobUuid="quick-007").status == "CANCELLED"


def test_ignore_first_needs_the_cancel_sent_again(env):
    sim, _, client = env
    client.jobs.cancelJob(jobUuid="stubborn-007")
    sim.advance(60)
    assert client.jobs.getJobStatus(jobUuid="stubborn-007").status == "BLOCKED"
    client.jobs.cancelJob(jobUuid="stubborn-007")
    sim.advance(31)
    assert client.jobs.getJobStatus(jobUuid="stubborn-007").status == "CANCELLED"


def test_ignore_never_honours_a_cancel(env):
    sim, _, client = env
    for _ in range(3):
        client.jobs.cancelJob(jobUuid="deaf-007")
        sim.advance(120)
    assert client.jobs.getJobStatus(jobUuid="deaf-007").status == "RUNNING"
    assert sim.cancels_received("deaf-007") == 3


def test_injected_cancel_failure_is_500_qmgr(env):
    sim, _, client = env
    sim.set_fault(kind="error", endpoint="cancel", count=1)
    with pytest.raises(InternalServerError) as err:
        client.jobs.cancelJob(jobUuid="run-007")
    assert err.value.message.startswith("JOBS_QMGR_POST_CANCEL")
    sim.advance(60)
    assert client.jobs.getJobStatus(jobUuid="run-007").status == "RUNNING"
    client.jobs.cancelJob(jobUuid="run-007")


def test_send_event_goes_into_history_from_any_user(env):
    _, login, _ = env
    carol = login("carol")
    carol.jobs.sendEvent(
        jobUuid="run-007", eventData="watchdog: runtime 13h exceeds 12h", eventDetail="WATCHDOG"
    )
    last = login("alice").jobs.getJobHistory(jobUuid="run-007")[-1]
    assert (last.event, last.eventDetail) == ("JOB_USER_EVENT", "WATCHDOG")
    assert last.description == "watchdog: runtime 13h exceeds 12h"


@pytest.mark.parametrize(
    "body",
    [
        {"eventData": "x" * 16_385},
        {"eventData": ""},
        {"eventData": "   "},
        {"eventData": "ok", "eventDetail": ""},
        {"eventData": "ok", "eventDetail": "x" * 65},
        {"eventData": "ok", "eventDetail": "has-dash"},
        {"eventData": "ok", "eventDetail": "has space"},
    ],
)
def test_send_event_refuses_what_its_schema_and_validate_refuse(env, body):
    """UserEventRequest.json and ReqUserEvent.validate: a 400 NET_REQUEST_PAYLOAD_ERROR."""
    _, _, client = env
    with pytest.raises(BadRequestError) as err:
        client.jobs.sendEvent(jobUuid="run-007", **body)
    assert err.value.message.startswith("NET_REQUEST_PAYLOAD_ERROR")


def test_send_event_limits(env):
    sim, _, client = env
    client.jobs.sendEvent(jobUuid="run-007", eventData="x" * 16_384)
    client.jobs.sendEvent(jobUuid="run-007", eventData="y", eventDetail="A_b9" + "z" * 60)
    details = [e["eventDetail"] for e in sim.history("run-007") if e["event"] == "JOB_USER_EVENT"]
    assert details == ["DEFAULT", "A_b9" + "z" * 60]
    with pytest.raises(BadRequestError) as err:
        client.jobs.sendEvent(jobUuid="done-007", eventData="too late")
    assert err.value.message.startswith("JOBS_IN_TERMINAL_STATE")


def test_hide_and_unhide(env):
    sim, _, client = env
    assert "run-007" in {j.uuid for j in client.jobs.getJobList(limit=-1)}
    client.jobs.hideJob(jobUuid="run-007")
    assert "run-007" not in {j.uuid for j in client.jobs.getJobList(limit=-1)}
    assert "run-007" not in {j.uuid for j in client.jobs.getJobSearchList(limit=-1)}
    assert client.jobs.getJob(jobUuid="run-007").visible is False
    client.jobs.unhideJob(jobUuid="run-007")
    assert "run-007" in {j.uuid for j in client.jobs.getJobList(limit=-1)}
    assert [r.path for r in sim.requests if r.endpoint == "hide"] == ["/v3/jobs/run-007/hide"]


def test_health_endpoints_do_not_clash_with_job_uuids(env):
    sim, _, client = env
    assert client.jobs.checkHealth() is not None
    assert client.jobs.readycheck() is not None
    assert [r.endpoint for r in sim.requests[-2:]] == ["health", "health"]


def test_set_status_from_tests_keeps_history(env):
    sim, _, client = env
    sim.set_status("run-007", "FAILED", "SCHEDULER_TIMEOUT")
    status = client.jobs.getJobStatus(jobUuid="run-007")
    assert (status.status, status.condition) == ("FAILED", "SCHEDULER_TIMEOUT")
    assert client.jobs.getJobHistory(jobUuid="run-007")[-1].eventDetail == "FAILED"


def test_unknown_path_is_404(env):
    resp = requests.get(f"{env[2].base_url}/v3/nothing", timeout=10)
    assert resp.status_code == 404


def test_record_times_are_utc_z(env):
    sim, _, _ = env
    for name in ("created", "lastUpdated", "remoteStarted"):
        moment = _ts(sim.job("run-007")[name])
        assert moment.tzinfo == UTC
