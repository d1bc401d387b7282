"""Evaluation never raises on any job record the simulator can produce (whole or narrowed)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.config.model import load_config
from watchdog.jobs import parse_job
from watchdog.rules.evaluate import compile_rules, evaluate, fields_needed
from watchdog.sim import Simulator, generate_fleet

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"
RULES = compile_rules(
    load_config(EXAMPLE, env={"TAPIS_USERNAME": "u", "TAPIS_PASSWORD": "p"}).rules
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    offset_h=st.integers(min_value=-48, max_value=72),
    narrow=st.booleans(),
)
def test_every_simulated_record_parses_and_evaluates(seed, offset_h, narrow):
    sim = Simulator(generate_fleet(40, seed), seed=seed)
    now = sim.now() + timedelta(hours=offset_h)
    fields = set(fields_needed(RULES))
    for uuid in sim.uuids():
        record = sim.job(uuid)
        if narrow:  # what a poll's `select=` returns
            record = {k: v for k, v in record.items() if k in fields}
        job = parse_job(record)
        since = now - timedelta(hours=abs(offset_h))
        verdicts = evaluate(job, RULES, now, since)
        assert [v.rule for v in verdicts] == [r.name for r in RULES]
        assert all(v.reason for v in verdicts)
