"""The plan screen's forecast panel and the launch confirmation's forecast line, driven through
Textual's pilot against the fake engine (which answers `forecast --json` as the engine would)."""

import asyncio

from engine.record.compute import duration
from fake_engine import (ENGINE_CMD, FORECAST, NO_CALIBRATION, RECALIBRATED_FILE, REFUSAL, screen_text, wait_shown,
                         wait_until)
from tui.app import BudgetApp
from tui.components.forecast_panel import ForecastPanel
from tui.inputs import PlanInputs
from tui.screens.confirm import ConfirmLaunch
from tui.screens.run import RunScreen

PLAN = PlanInputs(task="gsm8k_math", model="tiny", budget=60.0, sft_cost=1.0, pft_cost=0.5)
SIZE = (120, 48)


async def forecast_answered(pilot) -> ForecastPanel:
    """The panel after the user asked for the forecast (F5): typing alone never calibrates."""
    plan = pilot.app.plan_screen
    await wait_until(pilot, lambda: plan.advice is not None, what="the recommendation")
    panel = plan.query_one(ForecastPanel)
    await wait_until(pilot, lambda: panel.problem, what="the cached-only answer")
    assert NO_CALIBRATION in panel.problem  # nothing cached yet, and nothing calibrated behind the user's back
    await pilot.press("f5")
    await wait_until(pilot, lambda: panel.figures is not None or (panel.problem and NO_CALIBRATION not in panel.problem),
                     what="the forecast")
    await pilot.pause()
    return panel


def test_the_panel_shows_the_engines_forecast_for_the_recommended_split(home):
    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            panel = await forecast_answered(pilot)
            assert panel.figures == FORECAST
            assert panel.request == ("gsm8k_math", "tiny", *app.plan_screen.advice.split, None)
            await wait_shown(pilot, app, "Forecast on this machine")
            text = screen_text(app)
            assert "Forecast on this machine" in text and "60 SFT examples + 0 pairs on cpu, 2 threads" in text
            for label, stage in (("base evaluation", "base_eval"), ("SFT evaluation", "sft_eval")):
                assert label in text and duration(FORECAST["stages"][stage]["seconds"]) in text
            assert "12 min 34 s" in text and "3.00 GiB" in text  # the total and the peak
            assert "4 min 02 s at cap" in text and "13 min 34 s at cap" in text  # if the answers run to the cap
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmLaunch), what="the confirmation")
            await pilot.pause()
            assert app.screen.launch.run_forecast == FORECAST
            await wait_shown(pilot, app, "12 min 34 s (13 min 34 s if answers run to the cap)",
                             "peak memory 3.00 GiB, 0.209 device-hours")

    asyncio.run(main())


def test_a_refused_forecast_says_why_on_the_panel_and_the_confirmation(home, monkeypatch):
    monkeypatch.setenv("FAKE_ENGINE_FORECAST", "refuse")

    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            panel = await forecast_answered(pilot)
            assert panel.figures is None and panel.problem == REFUSAL
            await wait_shown(pilot, app, "no forecast: the run needs about 3.00 GiB")
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmLaunch), what="the confirmation")
            assert app.screen.launch.forecast_problem == REFUSAL

    asyncio.run(main())


def test_a_calibration_timed_on_a_busy_machine_is_flagged_and_f5_makes_it_again(home, monkeypatch):
    """Its steps ran slow, so every time forecast from them is long: the panel says so, and F5
    (only then) asks the engine for a new calibration in place of the cached one."""
    monkeypatch.setenv("FAKE_ENGINE_FORECAST", "busy")

    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            panel = await forecast_answered(pilot)
            assert panel.figures["calibration"]["other_cores"] == 1.5
            await wait_shown(pilot, app, "other work took 1.5 of this machine's 2 cores")
            assert "F5 calibrates again" in screen_text(app) and not (home / RECALIBRATED_FILE).exists()
            await pilot.press("ctrl+r")  # the launch confirmation says it too
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmLaunch), what="the confirmation")
            await wait_shown(pilot, app, "other work took 1.5 of this machine's 2 cores")
            assert "F5 on the plan screen calibrates again" in screen_text(app)
            await pilot.press("escape")
            await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmLaunch), what="the plan screen")
            await pilot.press("f5")
            await wait_until(pilot, lambda: panel.figures == FORECAST, what="the new calibration's forecast")
            await pilot.pause()
            assert (home / RECALIBRATED_FILE).exists() and "other work took" not in screen_text(app)
            recalibrated, ticket = (home / RECALIBRATED_FILE).stat().st_mtime_ns, panel.ticket
            await pilot.press("f5")  # asked again, but a quiet calibration is kept
            await wait_until(pilot, lambda: panel.ticket > ticket and panel.figures == FORECAST, what="the answer")
            assert (home / RECALIBRATED_FILE).stat().st_mtime_ns == recalibrated

    asyncio.run(main())


def test_once_a_run_finishes_the_same_split_is_forecast_again_with_its_history(home):
    """The engine refines a forecast by this machine's finished runs (`× history`): a run that
    finishes makes the panel ask again for the split it shows, not keep the answer it had."""
    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            panel = await forecast_answered(pilot)
            plan, split = app.plan_screen, app.plan_screen.advice.split
            assert panel.figures == FORECAST and "history" not in screen_text(app)
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmLaunch), what="the confirmation")
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
            watch = app.screen.run_watch
            await wait_until(pilot, lambda: watch.state.finished, what="the run to finish")
            await pilot.press("escape")
            await wait_until(pilot, lambda: app.screen is plan, what="the plan screen")
            await wait_shown(pilot, app, "calibration × history (1")  # the source column wraps the rest
            assert plan.advice.split == split and panel.request[2:4] == split  # the same split, asked again

    asyncio.run(main())


def test_a_refit_while_f5_calibrates_does_not_cut_the_calibration_short(home, monkeypatch):
    """A run or a pilot that ends while the user's calibration runs refits the advisor; the panel
    asks again only once that calibration has answered."""
    monkeypatch.setenv("FAKE_ENGINE_FORECAST", "slow")  # calibrating takes 2 s, a cached-only answer 30 s

    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            plan = app.plan_screen
            await wait_until(pilot, lambda: plan.advice is not None, what="the recommendation")
            panel = plan.query_one(ForecastPanel)
            await pilot.press("f5")
            await wait_until(pilot, lambda: panel._child is not None and "--cached-only" not in panel._child.args,
                             what="the calibrating question")
            calibrating = panel._child
            app.fit_advisor()  # as a finished run refits it
            await wait_until(pilot, lambda: panel.figures == FORECAST, what="the calibration's answer")
            assert calibrating.returncode == 0 and panel._child is calibrating

    asyncio.run(main())


def test_an_invalid_field_withdraws_the_forecast_and_its_fix_brings_it_back(home):
    """A forecast of a plan no longer on screen is not shown beside "fix the fields"."""
    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            panel = await forecast_answered(pilot)
            app.screen.query_one("#in-budget").focus()
            await pilot.press("end", "x")
            await wait_shown(pilot, app, "no forecast: fix the fields marked in red")
            assert panel.figures is None and panel.request is None and "12 min 34 s" not in screen_text(app)
            await pilot.press("backspace")
            await wait_until(pilot, lambda: panel.figures == FORECAST, what="the forecast again")
            await wait_shown(pilot, app, "12 min 34 s")

    asyncio.run(main())


def test_f5_while_the_cached_only_question_runs_shows_no_interrupted_answer(home, monkeypatch):
    """F5 stops the slower question it supersedes; that child's "engine: interrupted" is not the
    answer to the new one, which is still calibrating."""
    monkeypatch.setenv("FAKE_ENGINE_FORECAST", "slow")

    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            panel = app.plan_screen.query_one(ForecastPanel)
            await wait_until(pilot, lambda: panel._child is not None, what="the cached-only question")
            superseded = panel._child
            await pilot.press("f5")
            await wait_until(pilot, lambda: superseded.poll() is not None, what="the superseded child's end")
            await pilot.pause(0.5)
            assert panel.problem == "" and "interrupted" not in screen_text(app)
            await wait_until(pilot, lambda: panel.figures == FORECAST, what="the calibrated forecast")

    asyncio.run(main())


def test_quitting_leaves_no_forecast_running(home):
    """The engine's forecast can take minutes (it converts the model, it may calibrate): quitting
    the app ends that child instead of waiting for it — also one whose worker only gets to start
    it after the app quit (it used to run to its end, and the app's process waited for it)."""
    import signal
    import sys
    import threading

    slow_engine = [sys.executable, "-c", "import time; time.sleep(60)"]
    panels = []

    async def main():
        app = BudgetApp(PLAN, engine_cmd=slow_engine)
        async with app.run_test(size=SIZE) as pilot:
            panel = app.plan_screen.query_one(ForecastPanel)
            await wait_until(pilot, lambda: panel._child is not None, what="the forecast child")
            panels.append(panel)

    asyncio.run(main())
    panel = panels[0]
    assert panel._child.wait(timeout=10) == -signal.SIGTERM  # running when the app quit

    # the worker's body, run as a late worker thread would run it, after the panel is gone
    late = threading.Thread(target=ForecastPanel._ask.__wrapped__, args=(panel, panel.ticket, slow_engine))
    late.start()
    late.join(timeout=10)
    assert not late.is_alive() and panel._child.poll() is not None
