"""A run trained by several processes says so: the fold reads `world_size` (and the config's
`nproc`) and the run screen's status line shows "2 processes"; a one-process run shows nothing."""

import asyncio
import json
import time

import pytest

from engine.record.home import run_dir
from fake_engine import canned_events, screen_text, timed, wait_until
from tui.app import BudgetApp
from tui.inputs import PlanInputs
from tui.runstate import RunState
from tui.screens.run import RunScreen

CONFIG = {"task": "gsm8k_math", "model": "tiny", "n_sft": 40, "n_pft": 30}


def _with_world(events: list[dict], nproc: int, world_size: int) -> list[dict]:
    for event in events:
        if event["type"] == "run_started":
            event["config"] = {**event["config"], "nproc": nproc}
        if event["type"] == "stage_started":
            event["world_size"] = world_size
    return events


def test_world_size_comes_from_the_config_then_from_each_stage():
    events = _with_world(timed("r", canned_events(CONFIG, "ok")), nproc=2, world_size=3)
    state = RunState()
    state.apply(events[0])
    assert state.world_size == 2  # asked for in the config
    state.apply_all(events[1:])
    assert state.world_size == 3  # what the stages actually ran with
    assert RunState().apply_all(timed("r", canned_events(CONFIG, "ok"))).world_size == 1
    assert RunState().apply_all(_with_world(timed("r", canned_events(CONFIG, "ok")), 2, True)).world_size == 2


@pytest.mark.parametrize("world_size", [1, 2])
def test_the_status_line_says_how_many_processes_train(home, world_size):
    run_id = f"procs-{world_size}"
    events = _with_world(timed(run_id, canned_events(CONFIG, "die"), start=time.time()), world_size, world_size)
    folder = run_dir(run_id)
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))

    async def main():
        app = BudgetApp(PlanInputs("gsm8k_math", "tiny", 100.0, 1.0, 1.0), attach=run_id)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
            watch = app.screen.run_watch
            await wait_until(pilot, lambda: watch.state.n_events == len(events), what="the events")
            await pilot.pause(0.3)
            return screen_text(app)

    text = asyncio.run(main())
    assert "SFT" in text
    assert ("2 processes" in text) == (world_size == 2) and "1 processes" not in text
