"""The simulator's search paging, as the Jobs service's code answers it; through real tapipy.

Each test names the code it follows (tapis-jobs 1.7.1, tapis-shared-java); the rows are in
docs/tapis-conformance.md.
"""

from __future__ import annotations

import urllib.request
from typing import Any
from urllib.error import HTTPError

import pytest
from tapipy.errors import BadRequestError, InternalServerError, NotFoundError

OWN = [f"{c}0000000-0000-4000-8000-000000000000-007" for c in "2468"]
SHARED = [f"{c}0000000-0000-4000-8000-000000000000-007" for c in "1357"]
FLEET = {
    "users": {"alice": "alice-pw", "bob": "bob-pw"},
    "jobs": [
        *({"uuid": u, "status": "RUNNING"} for u in reversed(OWN)),
        *({"uuid": u, "status": "RUNNING", "owner": "bob", "shared_with": ["alice"]}
          for u in reversed(SHARED)),
        {"uuid": "90000000-0000-4000-8000-000000000000-007", "status": "RUNNING", "owner": "bob"},
    ],
}  # fmt: skip


@pytest.fixture
def env(make_sim, tapis):
    sim, url = make_sim(FLEET)
    return sim, url, tapis(sim, url, "alice")


def uuids(jobs: Any) -> list[str]:
    return [j.uuid for j in jobs]


def plain_text(exc: Any) -> str:
    assert exc.response.headers["Content-Type"].startswith("text/plain")
    return str(exc.response.text)


# -- startAfter: an int query parameter that the DAO never uses --------------------------------


def test_a_uuid_in_start_after_is_a_404_with_an_empty_body(env):
    """`JobSearchResource.getJobSearchList(@QueryParam("startAfter") int startAfter)`."""
    _, _, client = env
    with pytest.raises(NotFoundError) as caught:
        client.jobs.getJobSearchList(limit=2, orderBy="uuid(asc)", startAfter=OWN[0])
    assert caught.value.response.content == b""


def test_an_int_start_after_is_accepted_and_ignored(env):
    _, _, client = env
    plain = client.jobs.getJobSearchList(limit=2, orderBy="uuid(asc)")
    page, debug = client.jobs.getJobSearchList(
        limit=2, orderBy="uuid(asc)", startAfter=5, _tapis_debug=True
    )
    assert uuids(page) == uuids(plain) == OWN[:2]
    assert debug.response.json()["metadata"]["startAfter"] == "5"


def test_start_after_without_order_by_or_beside_skip_is_a_plain_text_400(env):
    """`QueryParametersRequestFilter.filter`: TAPIS_QUERY_PARAM_INVALID_PAIR1 / PAIR2."""
    _, _, client = env
    with pytest.raises(BadRequestError) as caught:
        client.jobs.getJobSearchList(startAfter=5)
    assert plain_text(caught.value).startswith("TAPIS_QUERY_PARAM_INVALID_PAIR1")
    with pytest.raises(BadRequestError) as caught:
        client.jobs.getJobSearchList(startAfter=5, orderBy="uuid(asc)", skip=0)
    assert plain_text(caught.value).startswith("TAPIS_QUERY_PARAM_INVALID_PAIR2")


# -- the shared request filter's other plain-text 400s ------------------------------------------


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": "ten"}, "TAPIS_QUERY_PARAM_NOTINT"),
        ({"skip": "1.5"}, "TAPIS_QUERY_PARAM_NOTINT"),
        ({"orderBy": "uuid(up)"}, "TAPIS_QUERY_PARAM_ORDERBY_ERROR"),
        ({"orderBy": "uu-id"}, "TAPIS_QUERY_PARAM_ORDERBY_ERROR"),
        ({"search": "(status.RUNNING)"}, "SEARCH_LIST_ERROR"),
    ],
)
def test_the_shared_filter_refuses_with_plain_text(env, params, code):
    _, _, client = env
    with pytest.raises(BadRequestError) as caught:
        client.jobs.getJobSearchList(_tapis_query_parameters=params)
    assert plain_text(caught.value).startswith(code)


def test_a_reserved_parameter_given_twice_is_a_plain_text_400(env):
    """tapipy cannot send a parameter twice, so this one goes out as plain HTTP."""
    sim, url, _ = env
    request = urllib.request.Request(
        f"{url}/v3/jobs/search?limit=1&limit=2",
        headers={"X-Tapis-Token": sim.mint_token("alice")},
    )
    with pytest.raises(HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    assert caught.value.read().decode().startswith("TAPIS_QUERY_PARAM_MULTIPLE")


# -- the resource's own checks ------------------------------------------------------------------


def test_list_type_is_case_sensitive(env):
    _, _, client = env
    with pytest.raises(BadRequestError) as caught:
        client.jobs.getJobSearchList(listType="my_jobs")
    message = caught.value.response.json()["message"]
    assert message.startswith("JOBS_SEARCH_INVALID_LISTTYPE_ERROR")


def test_an_unknown_select_attribute_is_a_400_and_an_unknown_order_column_a_500(env):
    _, _, client = env
    with pytest.raises(BadRequestError) as caught:
        client.jobs.getJobSearchList(select="uuid,bogus")
    assert caught.value.response.json()["message"].startswith(
        "JOBS_SEARCH_INVALID_SELECTLIST_ERROR"
    )
    # The filter checks only the name's form; the DAO finds no such column and throws.
    with pytest.raises(InternalServerError):
        client.jobs.getJobSearchList(orderBy="bogus(asc)")


# -- JobsDao: ORDER BY / LIMIT / OFFSET, and nothing else ---------------------------------------


def test_limit_minus_one_drops_order_and_skip_for_a_select_list(env):
    _, _, client = env
    ordered = client.jobs.getJobSearchList(limit=-1, orderBy="uuid(asc)", skip=1)
    assert uuids(ordered) == OWN[1:]  # summary attributes: ordered, offset
    unordered = client.jobs.getJobSearchList(
        limit=-1, orderBy="uuid(asc)", skip=1, select="uuid,status"
    )
    assert uuids(unordered) == list(reversed(OWN))  # table order, every row


def test_all_jobs_is_the_own_page_then_a_shared_page_appended(env):
    """Not one ordered list: shared uuids that sort first come after the own ones."""
    _, _, client = env
    first = client.jobs.getJobSearchList(listType="ALL_JOBS", limit=6, orderBy="uuid(asc)")
    assert uuids(first) == OWN + SHARED[:2]
    # Skipping past the own jobs skips into the shared ones by what is left of the skip.
    later = client.jobs.getJobSearchList(listType="ALL_JOBS", limit=6, skip=5, orderBy="uuid(asc)")
    assert uuids(later) == SHARED[1:]
    shared = client.jobs.getJobSearchList(listType="SHARED_JOBS", orderBy="uuid(asc)")
    assert uuids(shared) == SHARED


def test_a_job_shared_with_its_owner_is_listed_twice_by_all_jobs(make_sim, tapis):
    fleet = {
        "users": {"alice": "alice-pw"},
        "jobs": [{"status": "RUNNING", "shared_with": ["alice"]}],
    }
    sim, url = make_sim(fleet)
    client = tapis(sim, url, "alice")
    (uuid,) = sim.uuids()
    assert uuids(client.jobs.getJobSearchList(listType="SHARED_JOBS")) == [uuid]
    assert uuids(client.jobs.getJobSearchList(listType="ALL_JOBS")) == [uuid, uuid]


def test_compute_total_counts_own_and_shared(env):
    _, _, client = env
    _, debug = client.jobs.getJobSearchList(
        listType="ALL_JOBS", limit=2, computeTotal=True, _tapis_debug=True
    )
    assert debug.response.json()["metadata"]["totalCount"] == len(OWN) + len(SHARED)


def test_summary_records_carry_a_null_condition(make_sim, tapis):
    """`JobsDao.getJobsSearchByUsername` selects no CONDITION column into `JobListDTO`."""
    fleet = {
        "users": {"alice": "alice-pw"},
        "jobs": [{"status": "FAILED", "condition": "SCHEDULER_TIMEOUT"}],
    }
    sim, url = make_sim(fleet)
    client = tapis(sim, url, "alice")
    (summary,) = client.jobs.getJobSearchList()
    assert summary.condition is None
    (selected,) = client.jobs.getJobSearchList(select="uuid,condition")
    assert selected.condition == "SCHEDULER_TIMEOUT"
    assert client.jobs.getJob(jobUuid=summary.uuid).condition == "SCHEDULER_TIMEOUT"
