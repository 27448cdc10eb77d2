"""The plan screen's next experiment, driven by keys against the fake engine: measuring the base
score fills the field and refits; the pilot proposal is `engine pilot`'s, shown beside the
recommendation; the pilots run one after another as ordinary runs, each refitting the advisor."""

import asyncio
import json
import time

from engine.record.store import RunStore
from fake_engine import BASE_SCORE, ENGINE_CMD, PILOT_ARGV_FILE, PILOTS, screen_text, wait_shown, wait_until
from tui.app import BudgetApp
from tui.components.pilot_panel import PilotPanel
from tui.inputs import PlanInputs
from tui.screens.run import RunScreen

PLAN = PlanInputs(task="gsm8k_math", model="Llama-3.1-8B (base)", budget=5000.0, sft_cost=1.0, pft_cost=0.5)
SIZE = (120, 48)


async def advised(pilot):
    plan = pilot.app.plan_screen
    await wait_until(pilot, lambda: plan.advice is not None and plan.advice.inputs == plan.inputs, what="advice")
    await pilot.pause()


async def base_score_asked(pilot) -> PilotPanel:
    """ctrl+b once the advice is in: the panel measuring the base score."""
    await advised(pilot)
    await pilot.press("ctrl+b")
    return pilot.app.plan_screen.query_one(PilotPanel)


def test_measuring_the_base_score_fills_the_field_and_records_the_point(home):
    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            await advised(pilot)
            await wait_shown(pilot, app, "Base score: not measured yet — ctrl+b measures it (no labels bought)")
            fitted_before = app.plan_screen.advice.n_runs
            await pilot.press("ctrl+b")
            field = app.plan_screen.query_one("#in-base_score")
            await wait_until(pilot, lambda: field.value == "0.031", what="the base score in its field")
            plan = app.plan_screen
            await wait_until(pilot, lambda: plan.advice.inputs.base_score == BASE_SCORE
                             and plan.advice.n_runs == fitted_before + 1, what="advice on the measured base")
            await wait_shown(pilot, app, f"measured {BASE_SCORE:.3f} (exact_match)")
            runs = RunStore().list_runs()
            assert [(r["n_sft"], r["n_pft"], r["status"], r["score"]) for r in runs] == [(0, 0, "finished", BASE_SCORE)]
            assert RunStore().base_scores("gsm8k_math", "Llama-3.1-8B") == {"exact_match": BASE_SCORE}

    asyncio.run(main())


def test_a_failed_measurement_says_why_and_leaves_the_field(home, monkeypatch):
    monkeypatch.setenv("FAKE_BASELINE", "error")

    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            panel = await base_score_asked(pilot)
            await wait_until(pilot, lambda: panel.base_problem != "", what="the failure")
            await wait_shown(pilot, app, "could not be measured: engine: error: unknown task 'gsm8k_math'")
            assert app.plan_screen.query_one("#in-base_score").value == ""

    asyncio.run(main())


def test_quitting_while_the_base_score_is_measured_does_not_wait_and_says_it_goes_on(home, monkeypatch):
    """The measurement is the user's (a recorded run, minutes for a real model): it goes on alone,
    and the app quits at once instead of blanking the terminal until it ends."""
    monkeypatch.setenv("FAKE_BASELINE", "slow")
    quit_at = []

    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            panel = await base_score_asked(pilot)
            await wait_until(pilot, lambda: panel.measuring is not None, what="the measurement")
            await wait_until(pilot, lambda: RunStore().list_runs(), what="the measurement's run")
            quit_at.append(time.monotonic())
        return app

    app = asyncio.run(main())
    assert time.monotonic() - quit_at[0] < 4  # the fake measurement takes 8 s
    assert app.left_going == ["the base score of Llama-3.1-8B (base) on gsm8k_math is still being measured: it is "
                              "recorded when done (`engine runs list`)"]
    started = time.monotonic()
    while RunStore().list_runs()[0]["status"] != "finished":
        assert time.monotonic() - started < 30, "the measurement did not end after the app quit"
        time.sleep(0.2)
    assert RunStore().list_runs()[0]["score"] == BASE_SCORE


def test_the_pilot_proposal_is_shown_and_the_pilots_run_one_after_another(home):
    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            await advised(pilot)
            await wait_shown(pilot, app, "ctrl+t proposes the small runs")
            await pilot.press("ctrl+t")
            panel = app.plan_screen.query_one(PilotPanel)
            await wait_until(pilot, lambda: panel.proposal is not None, what="the proposal")
            await pilot.pause()
            text = screen_text(app)
            assert "Pilot 1: 16 SFT + 16 pairs, cost 24.00 → expected regret 0.0120" in text
            assert "Pilot 2: 32 SFT + 0 pairs, cost 32.00 → expected regret 0.0080" in text
            assert "0.0210 now, 0.0080 after the pilots (cost 56.00)" in text and PILOTS["reason"] in text
            argv = json.loads((home / PILOT_ARGV_FILE).read_text())
            assert argv[:10] == ["--task", "gsm8k_math", "--model", "Llama-3.1-8B (base)", "--budget", "5000.0",
                                 "--sft-cost", "1.0", "--pft-cost", "0.5"] and "--json" in argv
            fitted_before = app.plan_screen.advice.n_runs

            await pilot.press("ctrl+l")
            await wait_until(pilot, lambda: len(panel.launched) == 2 and panel.running is None
                             and all(app.watches[r].state.status == "finished" for r in panel.launched),
                             timeout=60, what="both pilots to finish")
            splits = [app.watches[run_id].state.split for run_id in panel.launched]
            assert splits == [(16, 16), (32, 0)] and panel.queue == []
            assert all(isinstance(screen, RunScreen) for screen in app.screen_stack[-2:])
            stored = {r["run_id"]: (r["n_sft"], r["n_pft"], r["status"]) for r in RunStore().list_runs()}
            assert stored == {panel.launched[0]: (16, 16, "finished"), panel.launched[1]: (32, 0, "finished")}
            # each pilot refitted the advisor: its three points (one shared base) count in the advice
            plan = app.plan_screen
            await wait_until(pilot, lambda: plan.advice.n_runs == fitted_before + 5, what="the refits")

    asyncio.run(main())
