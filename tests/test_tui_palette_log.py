"""The command palette's commands, the run screen's log pane (a library's progress bar as one
updating line, harmless library warnings left out), the generations view, and the prediction
arriving as a message from its worker."""

import asyncio
import json
import time

from engine.record.home import run_dir
from fake_engine import canned_events, screen_text, timed, wait_shown, wait_until
from tui.app import BudgetApp
from tui.commands import BudgetCommands
from tui.components.log_pane import LogPane
from tui.inputs import PlanInputs
from tui.messages import PredictionReady
from tui.screens.confirm import ConfirmLaunch
from tui.screens.generations import GenerationsScreen
from tui.screens.plan import PlanScreen
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen

SIZE = (120, 40)
PLAN = PlanInputs(task="gsm8k_math", model="Llama-3.1-8B (base)", budget=400.0, sft_cost=1.0, pft_cost=1.0)
CONFIG = {"task": "gsm8k_math", "model": "Llama-3.1-8B (base)", "n_sft": 100, "n_pft": 300}


def _attached_run(run_id: str, log: bytes, generations: list[dict] | None = None) -> None:
    """A finished run folder as a run started elsewhere leaves it."""
    folder = run_dir(run_id)
    folder.mkdir(parents=True)
    events = timed(run_id, canned_events(CONFIG, "ok"), start=time.time())
    if generations is not None:
        for event in events:
            if event["type"] == "eval" and event["stage"] == "base":
                event["generations"] = "evals/base.jsonl"
        (folder / "evals").mkdir()
        (folder / "evals" / "base.jsonl").write_text("".join(json.dumps(row) + "\n" for row in generations))
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (folder / "engine.log").write_bytes(log)


def _log_text(screen) -> str:
    return "\n".join(line.text for line in screen.query_one(LogPane).lines)


def test_palette_launches_switches_the_plot_and_opens_past_runs(home):
    async def main():
        app = BudgetApp(PLAN)
        async with app.run_test(size=SIZE) as pilot:
            plan = app.plan_screen
            await wait_until(pilot, lambda: plan.advice is not None, what="advice")
            names = [name for name, _, _ in BudgetCommands(plan).commands()]
            assert names[:2] == ["Launch run", "Switch plot"] and names[-1] == "Past runs"
            for query, reached in (("switch plot", lambda: plan.plot == "iso-plot"),
                                   ("launch run", lambda: isinstance(app.screen, ConfirmLaunch))):
                await pilot.press("ctrl+p")
                await pilot.press(*query)
                await pilot.pause(0.3)
                await pilot.press("enter")
                await wait_until(pilot, reached, what=query)
            await pilot.press("escape")
            await wait_until(pilot, lambda: app.screen is plan, what="the plan screen again")
            await pilot.press("ctrl+p", *"past runs")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), what="past runs")

    asyncio.run(main())


def test_measure_base_score_is_listed_only_where_the_plan_screen_offers_it(home):
    class MeasuringPlanScreen(PlanScreen):
        measured = 0

        def action_measure_base_score(self) -> None:
            self.measured += 1

    async def main():
        app = BudgetApp(PLAN)
        async with app.run_test(size=SIZE) as pilot:
            listed = [name for name, _, _ in BudgetCommands(app.plan_screen).commands()]
            assert ("Measure base score" in listed) == hasattr(PlanScreen, "action_measure_base_score")
        app = BudgetApp(PLAN)
        app.plan_screen = measuring = MeasuringPlanScreen(PLAN, app.planner, app)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+p", *"measure base")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await wait_until(pilot, lambda: measuring.measured == 1, what="the base score action")

    asyncio.run(main())


def test_log_pane_shows_a_progress_bar_as_one_line_and_leaves_out_harmless_warnings(home):
    bar = "".join(f"\rConverting and de-quantizing GGUF tensors...: {p:3d}%| | {p * 272 // 100}/272"
                  for p in (0, 50, 100))
    log = (f"{bar}\n"
           "2026 WARNING bitsandbytes.backends.cpu.ops: Failed to load CPU gemm_4bit_forward from kernels\n"
           "2026 WARNING py.warnings: m.py:1: FutureWarning: `is_gradient_checkpointing` is deprecated\n"
           "  warnings.warn(\n"
           "loading model from the cache\n"
           "\rMap:  10%| | 1/10\rMap [/x]:  20%| | 2/10").encode()  # `[/x]`: a bar's text, not markup
    _attached_run("noisy-1", log)

    async def main():
        app = BudgetApp(PLAN, attach="noisy-1")
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
            screen = app.screen
            await wait_until(pilot, lambda: "loading model" in _log_text(screen), what="the log")
            text = _log_text(screen)
            assert text.count("GGUF tensors") == 1 and "272/272" in text and "0/272" not in text
            assert "gemm_4bit" not in text and "checkpointing" not in text and "warnings.warn" not in text
            await wait_shown(pilot, app, "Map [/x]:  20%")  # the bar being drawn, in the pane's bottom border

    asyncio.run(main())


def test_g_shows_what_the_model_wrote(home):
    rows = [{"prompt": "How many eggs?", "output": "#### 7", "reference": "She has 9 eggs.\n#### 9", "score": 0.0},
            {"prompt": "Who won?", "output": "Bryan", "reference": "Bryan", "score": 1.0}]
    _attached_run("wrote-1", b"", rows)

    async def main():
        app = BudgetApp(PLAN, attach="wrote-1")
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
            await wait_until(pilot, lambda: app.screen.run_watch.state.finished, what="the events")
            await pilot.press("g")
            await wait_until(pilot, lambda: isinstance(app.screen, GenerationsScreen), what="the generations")
            await wait_shown(pilot, app, "How many eggs?")
            text = screen_text(app)
            assert "How many eggs?" in text and "#### 7" in text and "She has 9 eggs. #### 9" in text
            assert "score 0.000" in text and "score 1.000" in text and "Bryan" in text
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen again")

    asyncio.run(main())


def test_the_prediction_reaches_the_run_screen_as_a_message(home):
    _attached_run("predicted-1", b"")
    seen = []

    async def main():
        app = BudgetApp(PLAN, attach="predicted-1")
        async with app.run_test(size=SIZE, message_hook=seen.append) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
            screen = app.screen
            await wait_until(pilot, lambda: screen.run_watch.prediction is not None, what="the prediction")
            messages = {id(m): m for m in seen if isinstance(m, PredictionReady)}  # one message (it bubbles up)
            assert [m.prediction for m in messages.values()] == [screen.run_watch.prediction]
            await wait_shown(pilot, app, "advisor predicted")

    asyncio.run(main())
