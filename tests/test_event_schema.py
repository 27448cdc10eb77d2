"""The event stream of a real tiny run against schema v1 (engine.record.events), on stdout and on disk."""

import json

import pytest

from engine.record.events import EVENT_FIELDS, problems
from runner import TINY, engine, events


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    result = engine(home, "run", *TINY, "--n-sft", "16", "--n-pft", "16", "--eval-size", "4",
                    "--checkpoint-every", "1", "--run-id", "schema", "--events-stdout")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines(), events(home, "schema")


def test_every_event_conforms(streamed):
    _, on_disk = streamed
    assert on_disk, "no events written"
    assert {e["run_id"] for e in on_disk} == {"schema"}
    assert [p for e in on_disk for p in problems(e)] == []


def test_stdout_carries_exactly_the_events_file(streamed):
    lines, on_disk = streamed
    assert [json.loads(line) for line in lines] == on_disk


def test_a_run_uses_every_type_but_the_failure_ones(streamed):
    used = {e["type"] for e in streamed[1]}
    assert used == set(EVENT_FIELDS) - {"resumed", "warning", "error"}


def test_times_never_go_back_and_log_steps_count_up(streamed):
    on_disk = streamed[1]
    times = [e["time"] for e in on_disk]
    assert times == sorted(times)
    for stage in ("sft", "dpo"):
        steps = [e["step"] for e in on_disk if e["type"] == "log" and e["stage"] == stage and "loss" in e]
        assert steps == list(range(1, len(steps) + 1)) and steps
        checkpoints = [e["step"] for e in on_disk if e["type"] == "checkpoint" and e["stage"] == stage]
        assert checkpoints == steps  # --checkpoint-every 1
