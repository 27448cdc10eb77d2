"""The plan screen, driven like a person would: the recommendation is the advisor's, recomputed
as the inputs change; a bad input shows its reason and nothing launches; flags open it prefilled."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from advisor import Advisor
from engine.record.past_runs import load_past_runs
from fake_engine import screen_text, wait_shown, wait_until
from tui.app import DEFAULT_INPUTS, BudgetApp, parse_args
from tui.inputs import PlanInputs, validate
from tui.screens.confirm import ConfirmLaunch
from tui.screens.plan import PlanScreen

ROOT = Path(__file__).resolve().parents[1]
LLAMA = PlanInputs(task="gsm8k_math", model="Llama-3.1-8B (base)", budget=5000.0, sft_cost=1.0, pft_cost=0.5)
SIZE = (120, 40)


def advisor_says(inputs: PlanInputs, sft_cost: float | None = None, pft_cost: float | None = None):
    return Advisor().fit(load_past_runs()).recommend(
        inputs.task, inputs.model, inputs.budget, sft_cost or inputs.sft_cost, pft_cost or inputs.pft_cost,
        params_b=inputs.params_b, base_score=inputs.base_score, compute_cost=inputs.compute_cost or 0.0)


async def advised(pilot, inputs: PlanInputs | None = None):
    """Wait until the plan screen shows advice for `inputs` (default: whatever it holds now)."""
    plan = pilot.app.plan_screen
    await wait_until(pilot, lambda: plan.advice is not None and plan.advice.inputs == (inputs or plan.inputs),
                     what="the recommendation")
    await pilot.pause()
    return plan.advice


async def retype(pilot, field: str, text: str) -> None:
    pilot.app.screen.query_one(f"#in-{field}").focus()
    await pilot.press("end", "ctrl+u", *text)


def test_the_recommendation_is_the_advisors_for_the_same_inputs(home):
    async def main():
        app = BudgetApp(LLAMA)
        async with app.run_test(size=SIZE) as pilot:
            advice = await advised(pilot, LLAMA)
            expected = advisor_says(LLAMA)
            assert advice.split == (expected.n_sft, expected.n_pft)
            assert advice.prediction == pytest.approx((expected.predicted_score, *expected.interval))
            text = screen_text(app)
            assert f"{expected.n_sft:,}" in text and f"{expected.n_pft:,}" in text
            assert f"{expected.predicted_score:.3f}" in text
            assert f"fitted on {expected.n_past_runs} past runs" in text
            for name in ("SFT only", "rule of thumb"):
                assert name in text
            sft_only = expected.baselines["sft_only"]
            assert f"{sft_only.predicted_score:.3f}" in text

    asyncio.run(main())


def test_the_acceptance_plan_matches_engine_advise(home):
    """`budgettui --task gsm8k_math --model "Llama-3.1-8B (base)" --budget 5000 --sft-cost 1 --pft-cost 0.5`
    shows the n_sft and n_pft of `engine advise` with the same flags."""
    flags = ["--task", "gsm8k_math", "--model", "Llama-3.1-8B (base)", "--budget", "5000", "--sft-cost", "1",
             "--pft-cost", "0.5"]
    engine = subprocess.run([sys.executable, "-m", "engine.cli", "advise", *flags, "--json"], capture_output=True,
                            text=True, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    expected = json.loads(engine.stdout)
    inputs, attach = parse_args(flags)
    assert attach is None

    async def main():
        app = BudgetApp(inputs)
        async with app.run_test(size=SIZE) as pilot:
            advice = await advised(pilot, inputs)
            assert advice.split == (expected["n_sft"], expected["n_pft"])
            text = screen_text(app)
            assert f"Buy {expected['n_sft']:,} SFT examples + {expected['n_pft']:,} preference pairs" in text

    asyncio.run(main())


def test_a_bad_cost_shows_its_reason_and_nothing_launches(home):
    async def main():
        app = BudgetApp(LLAMA)
        async with app.run_test(size=SIZE) as pilot:
            await advised(pilot, LLAMA)
            await retype(pilot, "sft_cost", "1.5x")
            await wait_until(pilot, lambda: app.plan_screen.inputs is None, what="the form to notice")
            reason = app.screen.query_one("#why-sft_cost")
            assert reason.has_class("-shown") and "must be a number" in str(reason.render())
            assert app.screen.query_one("#in-sft_cost").has_class("-invalid")
            await wait_shown(pilot, app, "Fix the fields marked in red")
            await pilot.press("ctrl+r")
            await pilot.pause(0.2)
            assert isinstance(app.screen, PlanScreen) and not app.watches
            assert not (home / "runs").exists()
            assert any("Fix the fields" in n.message for n in app._notifications)

            await retype(pilot, "sft_cost", "-2")
            await pilot.pause(0.1)
            assert "must be greater than 0" in str(app.screen.query_one("#why-sft_cost").render())
            await retype(pilot, "sft_cost", "2")
            advice = await advised(pilot)
            assert not app.screen.query_one("#why-sft_cost").has_class("-shown")
            assert advice.split == (lambda r: (r.n_sft, r.n_pft))(advisor_says(advice.inputs))

    asyncio.run(main())


def test_the_advice_follows_typing_after_a_short_pause(home):
    async def main():
        app = BudgetApp(LLAMA)
        async with app.run_test(size=SIZE) as pilot:
            await advised(pilot, LLAMA)
            await retype(pilot, "budget", "20000")
            await retype(pilot, "compute_cost", "2500")
            wanted = PlanInputs(**{**LLAMA.__dict__, "budget": 20000.0, "compute_cost": 2500.0})
            advice = await advised(pilot, wanted)
            expected = advisor_says(wanted)
            assert advice.recommendation.label_budget == 17500.0
            assert advice.split == (expected.n_sft, expected.n_pft)

    asyncio.run(main())


def test_the_advisors_refusal_is_shown_and_blocks_launch(home):
    async def main():
        app = BudgetApp(LLAMA)
        async with app.run_test(size=SIZE) as pilot:
            await advised(pilot, LLAMA)
            await retype(pilot, "budget", "0.25")
            await wait_until(pilot, lambda: app.plan_screen.refusal != "", what="the refusal")
            await wait_shown(pilot, app, "buys no example")
            await pilot.press("ctrl+r")
            await pilot.pause(0.1)
            assert isinstance(app.screen, PlanScreen)

    asyncio.run(main())


def test_the_iso_score_view_draws_the_grid_and_launch_confirms_the_exact_command(home):
    async def main():
        app = BudgetApp(LLAMA, engine_cmd=["my-engine"], run_args=["--max-steps", "3"])
        async with app.run_test(size=SIZE) as pilot:
            advice = await advised(pilot, LLAMA)
            await pilot.press("ctrl+g")
            await wait_until(pilot, lambda: app.plan_screen.grid is not None, what="the iso-score grid")
            grid = app.plan_screen.grid[1]
            assert grid.scores.shape == (len(grid.n_sft), len(grid.n_pft))
            await wait_shown(pilot, app, "Iso-score curves")
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmLaunch), what="the confirmation")
            launch = app.screen.launch
            assert launch.argv == ["my-engine", "run", "--task", "gsm8k_math", "--model", "Llama-3.1-8B (base)",
                                   "--n-sft", str(advice.split[0]), "--n-pft", str(advice.split[1]),
                                   "--events-stdout", "--run-id", launch.run_id, "--max-steps", "3"]
            assert str(app.screen.query_one("#confirm-command").render()) == launch.command_line
            await wait_shown(pilot, app, "Launch this run?")
            await pilot.press("escape")
            await pilot.pause(0.1)
            assert isinstance(app.screen, PlanScreen) and not app.watches

    asyncio.run(main())


def _timed_run(home, run_id: str, model: str, **seconds) -> None:
    """A finished run of `model` on this machine with its measured seconds per example seen."""
    from engine.record.store import RunStore

    store = RunStore()
    store.create_run(run_id, task="gsm8k_math", model=model, params_b=8.0, n_sft=16, n_pft=16, config={},
                     run_dir=str(home / "runs" / run_id), pid=1)
    for stage, value in seconds.items():
        store.add_metric(run_id, stage, "seconds_per_example", value)
    store.finish_run(run_id, status="finished", score=0.3, metric="gsm8k_test_accuracy", results={})


def test_a_gpu_hour_price_adds_the_measured_gpu_time_to_each_price(home):
    _timed_run(home, "a", "meta-llama/Llama-3.1-8B", sft=0.5, dpo=2.0)
    _timed_run(home, "b", "Llama-3.1-8B (base)", sft=0.7, dpo=3.0)

    async def main():
        app = BudgetApp(LLAMA, engine_cmd=["my-engine"])
        async with app.run_test(size=SIZE) as pilot:
            plain = await advised(pilot, LLAMA)
            await retype(pilot, "gpu_hour_price", "300")
            wanted = PlanInputs(**{**LLAMA.__dict__, "gpu_hour_price": 300.0})
            advice = await advised(pilot, wanted)
            hours_sft, hours_pft = 0.6 * 2 / 3600, 2.5 * 2 / 3600  # medians × the engine's 2 epochs
            expected = advisor_says(wanted, 1.0 + 300 * hours_sft, 0.5 + 300 * hours_pft)
            assert advice.split == (expected.n_sft, expected.n_pft) != plain.split
            hours = expected.n_sft * hours_sft + expected.n_pft * hours_pft
            assert advice.forecast["forecast_hours"] == pytest.approx(hours)
            forecast = f"+ {hours:,.2f} GPU-hours × 300 = {300 * hours:,.2f} forecast (measured on 2 of your runs"
            await wait_shown(pilot, app, forecast, f"on labels + {300 * hours:,.2f} on GPU time")
            assert not app.screen.query_one("#why-gpu_hour_price").has_class("-shown")
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmLaunch), what="the confirmation")
            assert app.screen.launch.forecast == advice.forecast
            await wait_shown(pilot, app, "GPU time", forecast)

    asyncio.run(main())


def test_an_unmeasured_model_shows_why_beside_the_price_and_advises_without_it(home):
    _timed_run(home, "sft-only", "Llama-3.1-8B", sft=0.6)  # a DPO time is never guessed from SFT's

    async def main():
        app = BudgetApp(LLAMA)
        async with app.run_test(size=SIZE) as pilot:
            await advised(pilot, LLAMA)
            await retype(pilot, "gpu_hour_price", "300")
            wanted = PlanInputs(**{**LLAMA.__dict__, "gpu_hour_price": 300.0})
            advice = await advised(pilot, wanted)
            expected = advisor_says(LLAMA)
            assert advice.split == (expected.n_sft, expected.n_pft) and advice.forecast is None
            reason = app.screen.query_one("#why-gpu_hour_price")
            assert reason.has_class("-shown")
            assert "no DPO stage of 'Llama-3.1-8B (base)' has been timed on this machine" in str(reason.render())
            await wait_shown(pilot, app, "GPU time left out: no DPO stage")

    asyncio.run(main())


@pytest.mark.parametrize("flags, problem", [
    (["--budget", "nan"], "budget"),
    (["--sft-cost", "-1"], "sft-cost"),
    (["--pft-cost", "abc"], "must be a number"),
    (["--base-score", "1.5"], "between 0 and 1"),
    (["--budget", "100", "--compute-cost", "100"], "leaves nothing"),
    (["--gpu-hour-price", "-2"], "gpu-hour-price"),
    (["--attach", "../etc"], "invalid run id"),
    (["--attach", "no-such-run"], "no events file"),
    (["--bogus"], "unrecognized arguments"),
])
def test_a_bad_flag_is_one_line_and_exit_2(home, flags, problem):
    done = subprocess.run([sys.executable, "-m", "tui.app", *flags], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("budgettui: error:") and problem in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_flags_override_the_defaults_they_name():
    inputs, attach = parse_args(["--budget", "1,000", "--pft-cost", "2", "--compute-cost", "10"])
    assert inputs == PlanInputs(DEFAULT_INPUTS.task, DEFAULT_INPUTS.model, 1000.0, DEFAULT_INPUTS.sft_cost, 2.0,
                                compute_cost=10.0)
    assert parse_args([])[0] == DEFAULT_INPUTS
    assert parse_args(["--gpu-hour-price", "2.5"])[0].gpu_hour_price == 2.5


def test_validation_reasons_per_field():
    inputs, errors = validate({"task": " ", "model": "m", "budget": "inf", "sft_cost": "0", "pft_cost": "1",
                               "params_b": "", "base_score": "", "compute_cost": ""})
    assert inputs is None
    assert errors == {"task": "required", "budget": "must be a finite number", "sft_cost": "must be greater than 0"}


def test_starting_the_app_loads_no_training_library(home):
    probe = """
import asyncio, sys
from tui.app import BudgetApp
async def main():
    app = BudgetApp()
    async with app.run_test() as pilot:
        while app.plan_screen.advice is None:
            await pilot.pause(0.05)
asyncio.run(main())
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    loaded = set(done.stdout.split())
    assert "textual" in loaded and "advisor" in loaded
    assert loaded & {"torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets"} == set()
