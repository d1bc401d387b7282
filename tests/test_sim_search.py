"""Search and list: conditions, select, paging, listType, visibility; through real tapipy."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from tapipy.errors import BadRequestError, InternalServerError

from watchdog.sim.schema import ALL_FIELDS, SUMMARY_FIELDS

FLEET = {
    "users": {"alice": "alice-pw", "bob": "bob-pw"},
    "admins": ["bob"],
    "jobs": [
        {"uuid": "a1-007", "name": "sweep, run (1)", "status": "RUNNING", "appId": "opensees-mp-s3",
         "nodeCount": 4, "maxMinutes": 720, "remoteStarted": "-13h", "tags": ["overnight", "sweep"],
         "execSystemId": "frontera"},
        {"uuid": "a2-007", "name": "adcirc-storm", "status": "QUEUED", "appId": "adcirc",
         "nodeCount": 1, "maxMinutes": 60, "remoteSubmitted": "-2h", "execSystemId": "ls6"},
        {"uuid": "a3-007", "name": "namd-fold", "status": "FINISHED", "appId": "namd",
         "nodeCount": 2, "maxMinutes": 120, "remoteStarted": "-5h", "ended": "-4h",
         "execSystemId": "stampede3"},
        {"uuid": "a4-007", "name": "hidden-one", "status": "RUNNING", "visible": False},
        {"uuid": "b1-007", "name": "bob-shared", "status": "RUNNING", "owner": "bob",
         "shared_with": ["alice"], "appId": "lammps"},
        {"uuid": "b2-007", "name": "bob-private", "status": "RUNNING", "owner": "bob"},
    ],
}  # fmt: skip


@pytest.fixture
def env(make_sim, tapis):
    sim, url = make_sim(FLEET)
    return sim, tapis(sim, url, "alice")


def _uuids(jobs) -> list[str]:
    return sorted(j.uuid for j in jobs)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status.eq": "RUNNING"}, ["a1-007"]),
        ({"status.neq": "RUNNING"}, ["a2-007", "a3-007"]),
        ({"status.in": "RUNNING,QUEUED"}, ["a1-007", "a2-007"]),
        ({"status.nin": "RUNNING,QUEUED"}, ["a3-007"]),
        ({"nodeCount.gt": "1"}, ["a1-007", "a3-007"]),
        ({"nodeCount.gte": "2"}, ["a1-007", "a3-007"]),
        ({"nodeCount.lt": "2"}, ["a2-007"]),
        ({"maxMinutes.lte": "120"}, ["a2-007", "a3-007"]),
        ({"appId.like": "opensees*"}, ["a1-007"]),
        ({"appId.like": "na!d"}, ["a3-007"]),
        ({"appId.nlike": "opensees*"}, ["a2-007", "a3-007"]),
        ({"maxMinutes.between": "60,120"}, ["a2-007", "a3-007"]),
        ({"maxMinutes.nbetween": "60,120"}, ["a1-007"]),
        ({"tags.contains": "overnight"}, ["a1-007"]),
        ({"tags.ncontains": "overnight"}, ["a2-007", "a3-007"]),
        ({"name.eq": r"sweep\, run \(1\)"}, ["a1-007"]),
        ({"name.in": r"sweep\, run \(1\),namd-fold"}, ["a1-007", "a3-007"]),
        ({"status.eq": "RUNNING", "execSystemId.eq": "frontera"}, ["a1-007"]),
        ({"exec_system_id.eq": "ls6"}, ["a2-007"]),
        ({"ended.gt": "2000-01-01T00:00:00Z"}, ["a3-007"]),
        ({"visible.eq": "true"}, ["a1-007", "a2-007", "a3-007"]),
    ],
)
def test_each_condition_operator(env, params, expected):
    sim, client = env
    jobs = client.jobs.getJobSearchList(_tapis_query_parameters=params)
    assert _uuids(jobs) == expected
    sent = dict(parse_qsl(sim.requests[-1].query))
    assert {k: sent[k] for k in params} == params


def test_created_between_dates(env):
    sim, client = env
    today = sim.now().date()
    jobs = client.jobs.getJobSearchList(
        _tapis_query_parameters={
            "created.between": f"2000-01-01,{today.replace(year=today.year + 1)}"
        }
    )
    assert _uuids(jobs) == ["a1-007", "a2-007", "a3-007"]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "RUNNING"},  # no operator
        {"status.is": "RUNNING"},  # no such operator
        {"maxMinutes.between": "1"},  # between needs two values
        {"name.eq": "a,b"},  # an unescaped special character
    ],
)
def test_badly_formed_conditions_are_a_json_400(env, params):
    """`SearchUtils.buildListFromQueryParms` in the resource: JOBS_SEARCH_LIST_ERROR."""
    _, client = env
    with pytest.raises(BadRequestError) as caught:
        client.jobs.getJobSearchList(_tapis_query_parameters=params)
    assert caught.value.response.json()["message"].startswith("JOBS_SEARCH_LIST_ERROR")


@pytest.mark.parametrize(
    "params",
    [
        {"nosuchfield.eq": "x"},
        {"nodeCount.gt": "many"},
        {"status.contains": "RUN"},
        {"tags.eq": "overnight"},
    ],
)
def test_conditions_the_database_layer_refuses_are_a_500(env, params):
    """`JobsDao.addSearchCondStrToWhere` throws; `JobsImpl` makes it INTERNAL_SERVER_ERROR."""
    _, client = env
    with pytest.raises(InternalServerError):
        client.jobs.getJobSearchList(_tapis_query_parameters=params)


def test_plain_keyword_filter_is_dropped_by_tapipy(env):
    sim, client = env
    jobs = client.jobs.getJobSearchList(status="RUNNING")
    assert sim.requests[-1].query == ""
    assert sim.requests[-1].params == {}
    assert _uuids(jobs) == ["a1-007", "a2-007", "a3-007"]


def test_select_summary_all_and_list(env):
    _, client = env
    summary = client.jobs.getJobSearchList(_tapis_query_parameters={"uuid.eq": "a1-007"})[0]
    assert set(vars(summary)) == set(SUMMARY_FIELDS)
    full = client.jobs.getJobSearchList(
        select="allAttributes", _tapis_query_parameters={"uuid.eq": "a1-007"}
    )[0]
    assert set(vars(full)) == set(ALL_FIELDS)
    assert isinstance(full.parameterSet, str)
    some = client.jobs.getJobSearchList(
        select="status,nodeCount", _tapis_query_parameters={"uuid.eq": "a1-007"}
    )[0]
    assert set(vars(some)) == {"status", "nodeCount", "uuid"}
    listed = client.jobs.getJobList()
    assert all(set(vars(j)) == set(SUMMARY_FIELDS) for j in listed)
    with pytest.raises(BadRequestError):
        client.jobs.getJobSearchList(select="nodeCount,bogus")


def test_list_type_and_visibility(env):
    _, client = env
    assert _uuids(client.jobs.getJobList()) == ["a1-007", "a2-007", "a3-007"]
    assert _uuids(client.jobs.getJobSearchList(listType="SHARED_JOBS")) == ["b1-007"]
    assert _uuids(client.jobs.getJobSearchList(listType="ALL_JOBS")) == [
        "a1-007",
        "a2-007",
        "a3-007",
        "b1-007",
    ]
    with pytest.raises(BadRequestError):
        client.jobs.getJobSearchList(listType="EVERYTHING")


def test_admin_cannot_list_other_users_jobs(make_sim, tapis):
    sim, url = make_sim(FLEET)
    bob = tapis(sim, url, "bob")
    assert _uuids(bob.jobs.getJobSearchList(listType="ALL_JOBS")) == ["b1-007", "b2-007"]
    assert bob.jobs.getJob(jobUuid="a1-007").owner == "alice"


def test_limit_skip_and_metadata(env):
    _, client = env
    page, debug = client.jobs.getJobSearchList(
        limit=2, skip=1, orderBy="uuid(asc)", computeTotal=True, _tapis_debug=True
    )
    assert [j.uuid for j in page] == ["a2-007", "a3-007"]
    meta = debug.response.json()["metadata"]
    assert meta == {
        "recordCount": 2,
        "recordLimit": 2,
        "recordsSkipped": 1,
        "orderBy": "uuid(asc)",
        "startAfter": None,
        "totalCount": 3,
    }
    _, debug = client.jobs.getJobSearchList(_tapis_debug=True)
    meta = debug.response.json()["metadata"]
    assert (meta["recordLimit"], meta["totalCount"]) == (100, -1)
    assert len(client.jobs.getJobSearchList(limit=-1)) == 3


def test_keyset_through_a_uuid_condition_and_other_orders(env):
    _, client = env
    first = client.jobs.getJobSearchList(limit=1, orderBy="uuid(asc)")
    rest = client.jobs.getJobSearchList(
        limit=5, orderBy="uuid(asc)", _tapis_query_parameters={"uuid.gt": first[-1].uuid}
    )
    assert [j.uuid for j in first + rest] == ["a1-007", "a2-007", "a3-007"]
    desc = client.jobs.getJobSearchList(
        orderBy="uuid(desc)", _tapis_query_parameters={"uuid.lt": "a3-007"}
    )
    assert [j.uuid for j in desc] == ["a2-007", "a1-007"]
    by_nodes = client.jobs.getJobSearchList(orderBy="nodeCount(desc),name(asc)")
    assert [j.uuid for j in by_nodes] == ["a1-007", "a3-007", "a2-007"]


def test_keyset_paging_sees_every_job_once(make_sim, tapis):
    jobs = [{"status": "RUNNING"} for _ in range(57)]
    sim, url = make_sim({"jobs": jobs})
    client = tapis(sim, url)
    seen: list[str] = []
    after = None
    while True:
        query = {"uuid.gt": after} if after else {}
        page = client.jobs.getJobSearchList(
            limit=10, orderBy="uuid(asc)", _tapis_query_parameters=query
        )
        if not page:
            break
        seen += [j.uuid for j in page]
        after = page[-1].uuid
    assert seen == sorted(sim.uuids())


def test_search_parameter_is_checked_but_never_applied(env):
    """`getJobSearchList` builds its conditions from the other query parameters only."""
    sim, client = env
    client.jobs.getJobSearchList(search="(status.eq.RUNNING)")
    assert sim.requests[-1].query == ""  # `search` is not a declared argument: tapipy drops it
    jobs = client.jobs.getJobSearchList(
        _tapis_query_parameters={"search": "(status.eq.RUNNING)~(nodeCount.gt.1)"}
    )
    assert _uuids(jobs) == ["a1-007", "a2-007", "a3-007"]  # every own visible job
    with pytest.raises(BadRequestError) as caught:
        client.jobs.getJobSearchList(_tapis_query_parameters={"search": "(status.RUNNING)"})
    assert caught.value.response.headers["Content-Type"].startswith("text/plain")
