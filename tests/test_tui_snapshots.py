"""Snapshots of the plan and run screens on fixed data (the shipped past runs, a fixed events
file, a frozen clock), driven by key presses. Regenerate with `pytest --snapshot-update`."""

import json

from textual.widgets import Input

from engine.record.home import run_dir
from fake_engine import canned_events, timed, wait_until
from tui.app import BudgetApp
from tui.inputs import PlanInputs
from tui.screens.confirm import ConfirmLaunch
from tui.screens.run import RunScreen

SIZE = (120, 40)
LLAMA = PlanInputs(task="gsm8k_math", model="Llama-3.1-8B (base)", budget=5000.0, sft_cost=1.0, pft_cost=0.5)
START = 1_800_000_000.0


def still_cursor(app) -> None:
    for field in app.screen.query(Input):
        field.cursor_blink = False


async def advice_shown(pilot) -> None:
    plan = pilot.app.plan_screen
    await wait_until(pilot, lambda: plan.advice is not None and plan.advice.inputs == plan.inputs)
    panel = plan.query_one("#forecast")
    await wait_until(pilot, lambda: panel.figures is not None or panel.problem, what="the forecast answer")
    still_cursor(pilot.app)
    await pilot.pause()


def plan_app() -> BudgetApp:
    return BudgetApp(LLAMA, engine_cmd=["engine"], new_id=lambda: "20270115-093000-abc123", clock=lambda: START)


def test_plan_screen_budget_line(home, snap_compare):
    assert snap_compare(plan_app(), terminal_size=SIZE, run_before=advice_shown)


def test_plan_screen_iso_score(home, snap_compare):
    async def iso_shown(pilot):
        await advice_shown(pilot)
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: pilot.app.plan_screen.grid is not None)
        await pilot.pause()

    assert snap_compare(plan_app(), terminal_size=SIZE, run_before=iso_shown)


def test_plan_screen_invalid_cost(home, snap_compare):
    async def bad_cost(pilot):
        await advice_shown(pilot)
        pilot.app.screen.query_one("#in-pft_cost").focus()
        await pilot.press("end", "ctrl+u", *"half", "ctrl+r")
        still_cursor(pilot.app)
        await pilot.pause(0.4)

    assert snap_compare(plan_app(), terminal_size=SIZE, run_before=bad_cost)


def test_launch_confirmation(home, snap_compare):
    async def confirming(pilot):
        await advice_shown(pilot)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmLaunch))
        await pilot.pause()

    assert snap_compare(plan_app(), terminal_size=SIZE, run_before=confirming)


def test_run_screen_of_a_finished_run(home, snap_compare):
    run_id = "20270115-093000-abc123"
    folder = run_dir(run_id)
    folder.mkdir(parents=True)
    config = {"task": "gsm8k_math", "model": "Llama-3.1-8B (base)", "n_sft": 1869, "n_pft": 6260}
    events = timed(run_id, canned_events(config, "ok"), start=START, gap=1.5)
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (folder / "engine.log").write_text("loaded Llama-3.1-8B (base) in 4-bit NF4\nSFT: 24 steps\nDPO: 16 steps\n")

    async def run_shown(pilot):
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        watch = pilot.app.screen.run_watch
        await wait_until(pilot, lambda: watch.state.finished and watch.prediction is not None)
        await pilot.pause(0.5)

    app = BudgetApp(LLAMA, attach=run_id, clock=lambda: START + 1000)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_shown)
