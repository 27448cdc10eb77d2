"""Plan → launch → run against the fake engine (a real child process printing schema-v1 events):
the run screen fills in, failures show as failures, the stop key stops, a flood of events is
kept up with, past runs open from the store, and the advisor refits as runs finish."""

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.record.events import read_events
from engine.record.home import run_dir
from engine.record.store import RunStore
from fake_engine import DPO_STEPS, ENGINE_CMD, SFT_STEPS, canned_events, screen_text, timed, wait_shown, wait_until
from tui.app import BudgetApp
from tui.components.runs_table import RunsTable
from tui.inputs import PlanInputs
from tui.screens.confirm import ConfirmLaunch
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen

ROOT = Path(__file__).resolve().parents[1]
SIZE = (120, 40)
PLAN = PlanInputs(task="gsm8k_math", model="Llama-3.1-8B (base)", budget=400.0, sft_cost=1.0, pft_cost=1.0)


async def launch(pilot, app) -> RunScreen:
    """Press the launch key, confirm, and return the run screen that opens."""
    plan = app.plan_screen
    await wait_until(pilot, lambda: plan.advice is not None and plan.advice.inputs == plan.inputs, what="advice")
    await pilot.press("ctrl+r")
    await wait_until(pilot, lambda: isinstance(app.screen, ConfirmLaunch), what="the confirmation")
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
    return app.screen


def test_a_launched_run_fills_the_run_screen_and_the_advisor_refits(home):
    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.plan_screen.advice is not None, what="advice")
            advice = app.plan_screen.advice
            screen = await launch(pilot, app)
            watch = screen.run_watch
            assert watch.live and watch.prediction == advice.prediction
            await wait_until(pilot, lambda: watch.state.finished, what="the run to finish")
            await pilot.pause(0.5)
            state = watch.state
            assert state.status == "finished"
            assert state.split == advice.split
            assert len(state.stages["sft"].loss) == SFT_STEPS and len(state.stages["dpo"].loss) == DPO_STEPS
            assert {k: v[1] for k, v in state.evals.items()} == {"base": 0.25, "sft": 0.4, "dpo": 0.45}
            await wait_shown(pilot, app, "FINISHED", "advisor predicted")
            text = screen_text(app)
            assert "FINISHED" in text and f"step {DPO_STEPS}/{DPO_STEPS}" in text
            assert "after DPO" in text and "0.450" in text and "advisor predicted" in text
            assert f"last 0.1827 at step {DPO_STEPS}" in text  # the DPO loss plot's title
            assert "acc 1.00" in text and "margin +0.800" in text
            assert f"fake engine: ok run {watch.run_id}" in text  # stderr, in the log pane
            assert "warning: 3 preference pairs" in text
            assert RunStore().get_run(watch.run_id)["status"] == "finished"
            # the finished run is a new past run: the plan's advisor refits on it
            await pilot.press("escape")
            # three measured points: the base model, the SFT policy and the final one
            await wait_until(pilot, lambda: app.plan_screen.advice.n_runs == advice.n_runs + 3, what="the refit")
            await wait_shown(pilot, app, f"fitted on {advice.n_runs + 3} past runs, 3 yours")

    asyncio.run(main())


def run_scenario(scenario: str, *extra: str):
    """Launch one fake-engine story and return (app, watch, screen text) once it has ended."""
    result = {}

    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD, run_args=["--scenario", scenario, *extra])
        async with app.run_test(size=SIZE) as pilot:
            watch = (await launch(pilot, app)).run_watch
            await wait_until(pilot, lambda: watch.state.finished, what=f"the {scenario} run to end")
            await pilot.pause(0.4)
            result.update(app=app, watch=watch, text=screen_text(app))

    asyncio.run(main())
    return result["app"], result["watch"], result["text"]


def test_an_error_event_shows_the_run_failed_with_its_message(home):
    app, watch, text = run_scenario("error")
    assert watch.state.status == "failed"
    assert "FAILED" in text and "error: oom: CUDA out of memory while training SFT step 6" in text
    assert watch.child.process.returncode == 1


def test_a_child_that_dies_without_finishing_shows_failed(home):
    app, watch, text = run_scenario("die")
    assert watch.state.status == "failed"
    assert "FAILED" in text and "engine exited with code 3 before the run finished" in text
    assert "Segmentation fault (simulated)" in text  # its last words on stderr
    assert any(n.title == "Run failed" for n in app._notifications)


def test_the_stop_key_interrupts_the_run_which_records_itself_stopped(home):
    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD, run_args=["--scenario", "slow", "--delay", "0.02"])
        async with app.run_test(size=SIZE) as pilot:
            watch = (await launch(pilot, app)).run_watch
            await wait_until(pilot, lambda: watch.state.n_logs >= 5, what="a few steps")
            await wait_shown(pilot, app, "ETA", "RUNNING")
            await pilot.press("s")
            await wait_until(pilot, lambda: watch.state.finished, what="the run to stop")
            assert watch.state.status == "stopped"
            assert watch.child.process.wait(timeout=10) == 130
            assert RunStore().get_run(watch.run_id)["status"] == "stopped"
            await pilot.pause(0.3)
            await wait_shown(pilot, app, "STOPPED")

    asyncio.run(main())


def test_a_flood_of_2000_log_events_is_kept_up_with(home):
    """A fake engine writing as fast as it can (thousands of events/s, far past the 200/s a real
    run reaches): every event lands in the state, and a key press during the flood is answered
    (the reader buffers; the screen folds a batch per tick). Rates are measured in BENCHMARKS.md."""
    n_logs = 2000
    timings = {}

    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD, run_args=["--scenario", "flood", "--n-logs", str(n_logs)])
        async with app.run_test(size=SIZE) as pilot:
            watch = (await launch(pilot, app)).run_watch
            started = time.monotonic()
            await wait_until(pilot, lambda: watch.state.n_logs > 0, what="the flood to start")
            pressed = time.monotonic()
            await pilot.press("ctrl+o")  # open past runs mid-flood, then come back
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
            timings["key"] = time.monotonic() - pressed
            await pilot.press("escape")
            await wait_until(pilot, lambda: watch.state.finished, timeout=60, what="the flood to end")
            timings["all"] = time.monotonic() - started
            await pilot.pause(0.4)
            assert watch.state.n_logs == n_logs
            assert watch.state.stages["sft"].loss[-1][0] == n_logs
            await wait_shown(pilot, app, f"step {n_logs}/{n_logs}")

    asyncio.run(main())
    print(f"\n2000 log events: all folded in {timings['all']:.2f}s ({2000 / timings['all']:.0f} events/s); "
          f"a key press mid-flood answered in {timings['key']:.2f}s")
    assert timings["key"] < 2.0  # the app is not frozen by the flood


def test_past_runs_list_the_store_and_open_one_from_its_events_file(home):
    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            watch = (await launch(pilot, app)).run_watch
            await wait_until(pilot, lambda: watch.state.finished, what="the run to finish")
            app.watches.clear()  # as if the app had been restarted: only the store and the files remain
            await pilot.press("escape", "ctrl+o")
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
            table = app.screen.query_one(RunsTable)
            await wait_until(pilot, lambda: table.row_count == 1, what="the runs table")
            await wait_shown(pilot, app, watch.run_id)
            text = screen_text(app)
            assert watch.run_id in text and "finished" in text and "0.450" in text
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
            opened = app.screen.run_watch
            assert opened is not watch and not opened.live
            await wait_until(pilot, lambda: opened.state.finished and opened.prediction is not None,
                             what="the run read from its file")
            assert opened.state.n_logs == SFT_STEPS + DPO_STEPS and opened.state.evals == watch.state.evals

    asyncio.run(main())


def test_past_runs_skip_a_damaged_row_and_name_it(home):
    store = RunStore()
    store.create_run("sound", task="gsm8k_math", model="org/[/x]", params_b=0.0001, n_sft=8, n_pft=0,
                     config={"seed": 1}, run_dir=str(run_dir("sound")), pid=1)
    store.set_status("sound", "failed")
    with sqlite3.connect(store.path) as db:
        db.execute("INSERT INTO runs (run_id, task, model, n_sft, n_pft, status, config, run_dir, created_at)"
                   " VALUES ('torn', 't', 'm-8B', 1, 1, 'finished', '{x', '/x', 2)")
    db.close()

    async def main():
        app = BudgetApp(PLAN, engine_cmd=ENGINE_CMD)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+o")
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
            table = app.screen.query_one(RunsTable)
            await wait_until(pilot, lambda: table.row_count == 1, what="the readable row")
            await pilot.pause()
            text = screen_text(app)
            assert "sound" in text and "org/[/x]" in text and "1 run (1 failed)" in text  # a name, not markup
            summary = str(app.screen.query_one("#runs-summary").render())
            assert f"skipped run store {store.path}, run 'torn': config is not readable JSON" in summary

    asyncio.run(main())


def write_events(run_id: str, events: list[dict]) -> Path:
    """A run folder holding `events` as its events file, as a run started elsewhere leaves it."""
    folder = run_dir(run_id)
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


def test_attach_follows_a_run_started_elsewhere_until_it_ends(home):
    run_id = "elsewhere-1"
    config = {"task": "gsm8k_math", "model": "Llama-3.1-8B (base)", "n_sft": 100, "n_pft": 300}
    events = timed(run_id, canned_events(config, "ok"), start=time.time())
    first, rest = events[:10], events[10:]
    folder = write_events(run_id, first)
    (folder / "engine.log").write_text("loading model from the cache\n")

    async def main():
        app = BudgetApp(PLAN, attach=run_id)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
            watch = app.screen.run_watch
            await wait_until(pilot, lambda: watch.state.n_events == 10, what="the first events")
            assert watch.state.status == "running" and not watch.live
            with open(folder / "events.jsonl", "a") as handle:
                for event in rest:
                    handle.write(json.dumps(event) + "\n")
            await wait_until(pilot, lambda: watch.state.finished, what="the rest of the file")
            await wait_until(pilot, lambda: watch.prediction is not None, what="the prediction for its split")
            await wait_shown(pilot, app, "FINISHED", "loading model from the cache", "advisor predicted")

    asyncio.run(main())


QUIT_WHILE_RUNNING = """
import asyncio, sys
sys.path.insert(0, "tests")
from fake_engine import ENGINE_CMD, wait_until
from tui.app import BudgetApp
from tui.inputs import PlanInputs
from tui.screens.confirm import ConfirmLaunch
from tui.screens.run import RunScreen

async def main():
    app = BudgetApp(PlanInputs("gsm8k_math", "Llama-3.1-8B (base)", 400.0, 1.0, 1.0), engine_cmd=ENGINE_CMD,
                    run_args=["--scenario", "slow", "--delay", "0.02"])
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.plan_screen.advice is not None)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmLaunch))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        watch = app.screen.run_watch
        await wait_until(pilot, lambda: watch.state.n_logs >= 5)
        print(watch.run_id, watch.child.pid, flush=True)
        await pilot.press("ctrl+q")
    return app

print(*asyncio.run(main()).left_going, sep="\\n")  # what `budgettui` says on the terminal as it quits
"""


def test_quitting_leaves_the_run_going_and_reopening_reattaches(home):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", QUIT_WHILE_RUNNING], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30  # quitting did not wait for the run
    first, *said = done.stdout.splitlines()
    run_id, pid = first.split()
    pid = int(pid)
    assert said == [f"run {run_id} goes on: `budgettui --attach {run_id}` follows it"]
    events_file = run_dir(run_id) / "events.jsonl"
    try:
        count = len(read_events(events_file))
        time.sleep(1.0)
        os.kill(pid, 0)  # still alive after the app (and its end of the stdout pipe) is gone
        assert len(read_events(events_file)) > count  # and still training

        async def main():
            app = BudgetApp(PLAN, attach=run_id)
            async with app.run_test(size=SIZE) as pilot:
                await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
                watch = app.screen.run_watch
                await wait_until(pilot, lambda: watch.state.pid == pid, what="the events so far")
                seen = watch.state.n_logs
                await wait_until(pilot, lambda: watch.state.n_logs > seen + 5, what="new events")
                await pilot.press("s")
                await wait_until(pilot, lambda: watch.state.finished, what="the stop")
                assert watch.state.status == "stopped"

        asyncio.run(main())
        assert RunStore().get_run(run_id)["status"] == "stopped"
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_a_real_engine_run_on_the_tiny_model(home):
    """The whole loop with the real `engine run` (tiny Llama, real 4-bit QLoRA, two steps a stage)."""
    plan = PlanInputs(task="gsm8k_math", model="tiny", budget=1000.0, sft_cost=20.0, pft_cost=1.0, params_b=0.0001)
    small = ["--max-steps", "2", "--eval-size", "4", "--batch-size", "2", "--grad-accum", "1", "--max-length", "128",
             "--eval-max-new-tokens", "16"]

    async def main():
        app = BudgetApp(plan, run_args=small)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.plan_screen.advice is not None, what="advice")
            advice = app.plan_screen.advice
            n_sft, n_pft = advice.split
            assert n_sft > 0 and n_pft > 0  # this price list buys a mix, so both stages train
            watch = (await launch(pilot, app)).run_watch
            assert watch.child.argv[:3] == [sys.executable, "-m", "engine.cli"]
            await wait_until(pilot, lambda: watch.state.finished, timeout=300, what="the real run to finish")
            await pilot.pause(0.5)
            state = watch.state
            assert state.status == "finished", watch.take_log()
            assert state.split == (n_sft, n_pft)
            assert set(state.evals) == {"base", "sft", "dpo"} and state.evals["dpo"][0] == "exact_match"
            assert len(state.stages["sft"].loss) == 2 and len(state.stages["dpo"].loss) == 2
            assert len(state.stages["dpo"].rewards["rewards/accuracies"]) == 2
            assert RunStore().get_run(watch.run_id)["status"] == "finished"
            text = screen_text(app)
            assert "FINISHED" in text and "exact_match" in text
            await pilot.press("escape")
            # three measured points: the base model, the SFT policy and the final one
            await wait_until(pilot, lambda: app.plan_screen.advice.n_runs == advice.n_runs + 3, what="the refit")

    asyncio.run(main())


def test_a_run_without_preference_pairs_says_it_has_no_dpo_stage(home):
    run_id = "sft-only-1"
    config = {"task": "gsm8k_math", "model": "Llama-3.1-8B (base)", "n_sft": 100, "n_pft": 0}
    events = [e for e in canned_events(config, "ok") if e[1].get("stage") != "dpo"]
    write_events(run_id, timed(run_id, events, start=time.time()))

    async def main():
        app = BudgetApp(PLAN, attach=run_id)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
            await wait_until(pilot, lambda: app.screen.run_watch.state.finished, what="the events file")
            await pilot.pause(0.3)
            text = screen_text(app)
            assert text.count("no DPO stage: this run buys 0 preference pairs") == 2  # loss plot and rewards panel
            assert f"at step {SFT_STEPS}" in text

    asyncio.run(main())
