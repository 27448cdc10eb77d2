"""Leave-one-panel-out check of the advisor on the shipped paper runs, and the closed loop.

For each (task, model) panel: fit on the other panels only, give the held-out panel's base-model
score, and at each budget of its grid let each policy pick one of the grid's SFT shares. Regret =
best observed score at that budget − observed score of the chosen share. Also: how often the held-
out points fall inside their 80% intervals, and how long fit and recommend take.

Closed loop (--loop): for each held-out panel and each target budget of at least 5,000, the
advisor proposes pilots (`advisor.pilot.propose_pilots`, one at a time) among the panel's grid
cells costing at most a tenth of the target; each proposed cell's digitised score is revealed as
a run, the advisor refits, and it recommends. The one setting, the interval spread behind the
posterior draws, is calibrated on the other panels only (nested), never on the held-out one.

    OMP_NUM_THREADS=1 .venv/bin/python bench/advisor_cv.py [--calibrate] [--loop] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np

from advisor import Advisor, shipped_runs
from advisor.pilot import propose_pilots
from advisor.recommend import rule_of_thumb

NOTES = """## How the form was chosen

The surface (advisor/curves.py) follows the paper's findings, not this table: gains logistic in
log data up to a ceiling; a preference pair worth a fraction of an SFT example for learning the
task (the cold start); a preference-only gain gated by SFT and acting on the gap SFT leaves (the
interaction); all pooled as mean + task + model + panel. A format step for any finetuning was
added because without it the fit overshot all seven base scores (by 0.04 on average), which
skews every curve anchored on a user's base score; it did not lower regret here (0.0115-0.0124
and 78-80% without it). Other variants scored with this script during development (task/model
prior scale 0.5 instead of 1.0, per-panel slopes, a metric-level effect, a Gaussian-process
residual on top) gave 0.0105-0.014 and 73-83%: one or two of the 41 choices, each decided by
score gaps near the ±0.02 digitising error, so none was kept.

A second pass scored three more principled changes once each (a change had to improve both
mean regret and the within-0.02 share without lowering coverage):
- Level errors: this script gives each held-out panel its own base-model score (its 0-example
  run). With score = 1 - (1 - base)·G(n_s, n_p) and the base pinned, the best share on a budget
  line does not depend on the base at all, so level errors already cancel in the decision; an
  additive "base + gains" form would change only how gains are shared between panels of
  different bases, not this, so it was not scored.
- Bayes decision (pick the share with the highest score averaged over posterior draws, not the
  score at the posterior mean): 0.0127 and 78% with the draws at spread 0.54 (the same choices);
  0.0139 and 78% with the unscaled Laplace posterior (spread 1). Not kept.
- Pooling the preference parameters (pair worth, preference reach and half point) twice as
  strongly as the level ones (prior scale x0.5): on task and model effects 0.0127, 78%, coverage
  77%; on task, model and panel effects 0.0127, 78%, coverage 78%. Not kept.
Low-confidence points were already down-weighted (noise x3, medium x1.5) and were left so.

Where the regret comes from: 9 of the 41 choices are more than 0.02 off, and they make 0.45 of
the 0.52 total regret: at 100-1,000 examples on helpfulness and on summarisation with Llama,
where a mix beat SFT only but the surface (preference gain gated by SFT) says SFT only; and at
5,000-10,000 on math and instruction following with Llama, where shares 0.5-0.75 beat the
chosen 0.25. The aim (<= 0.010 mean regret, >= 85% within 0.02, i.e. 35 of 41) needs three of
those nine right; none of the forms above lowers that count of nine. The aim is not reached; the rule of
thumb is beaten on both measures.

`spread` (the interval width factor) is the one number set from this table: the 7-fold value is
shipped, and the nested figure above is the honest coverage of that procedure."""
LOOP_NOTES = """## The closed loop: how it was set up, and what it shows

Each pilot is proposed by `advisor.pilot.propose_pilots` with the held-out panel's small cells
(budget at most a tenth of the target) as the candidates, one at a time (propose one, reveal its
digitised score as a run, refit, propose the next), with `charge=False`: a revealed cell costs
nothing here, so a pilot is proposed whenever it lowers the expected regret at all. A cell the
advisor expects to teach nothing is not proposed, so "k pilots" means at most k, and the
"pilots run" column says how many were. The final choice is the advisor's usual one (the best
share of the panel's grid on the refitted posterior-mean surface).

The only setting is the interval spread (the width of the posterior draws the value of
information is computed over). It is calibrated for each held-out panel on the other six panels
only (80% coverage of their held-out points); the spreads used are listed under the table. The
pilot noise is the advisor's fitted residual scale; nothing else was tuned, and this is the one
configuration scored (no variant was tried and dropped).

With at most two pilots the goal (mean regret <= 0.010, >= 85% within 0.02, never worse than the
rule of thumb) holds on the first two measures over these 20 choices, and in aggregate on the
third; choice by choice, one case is worse than the rule of thumb (listed above the spreads).
20 choices, each decided by score gaps near the +-0.02 digitising error, are a small sample: one
choice moves the share within 0.02 by 5 points. Revealing every small cell at once is worse than
proposing a few: the small cells' scores pull the panel's curve at 100-500 examples, and the
surface's extrapolation from there to 5,000-20,000 is what goes wrong; a pilot is proposed only
where the posterior says its outcome can change the choice."""
RESULTS = Path(__file__).resolve().parent / "results" / "advisor.md"
WITHIN = 0.02
FIXED = {"SFT only": lambda budget: 1.0, "always 1:1": lambda budget: 0.5,
         "rule of thumb": lambda budget: rule_of_thumb(budget, 1.0, 1.0)}


def panels(runs):
    grouped = defaultdict(list)
    for run in runs:
        grouped[(run.task, run.model)].append(run)
    return grouped


def leave_one_out(runs):
    """(task, model, panel runs, base score, advisor fitted on every other panel) per panel."""
    for (task, model), panel in sorted(panels(runs).items()):
        advisor = Advisor().fit([r for r in runs if (r.task, r.model) != (task, model)])
        base = next((r.score for r in panel if r.n_sft + r.n_pft == 0), None)
        yield task, model, panel, base, advisor


def regrets(folds):
    """Regret of each policy at every (held-out panel, budget) of the grid."""
    found = defaultdict(list)
    for task, model, panel, base, advisor in folds:
        by_budget = defaultdict(dict)
        for run in panel:
            if run.n_sft + run.n_pft:
                by_budget[run.n_sft + run.n_pft][run.n_sft / (run.n_sft + run.n_pft)] = run.score
        for budget, scores in sorted(by_budget.items()):
            best = max(scores.values())
            rec = advisor.recommend(task, model, budget, 1.0, 1.0, base_score=base, ratios=list(scores))
            found["advisor"].append(best - scores[rec.sft_ratio])
            for name, policy in FIXED.items():
                if policy(budget) in scores:  # a share missing from the figure is not scored
                    found[name].append(best - scores[policy(budget)])
    return found


def coverage(folds, spread: float) -> tuple[float, float, int]:
    """Share of held-out points inside their 80% interval at this `spread`, mean width, count."""
    inside, widths = [], []
    for task, model, panel, base, advisor in folds:
        advisor.spread = spread
        points = [r for r in panel if r.n_sft + r.n_pft]
        _, lo, hi = advisor.predict(task, model, [r.n_sft for r in points], [r.n_pft for r in points],
                                    base_score=base)
        scores = np.array([r.score for r in points])
        inside.extend((lo <= scores) & (scores <= hi))
        widths.extend(hi - lo)
    return float(np.mean(inside)), float(np.mean(widths)), len(inside)


def calibrate(folds, target: float = 0.8) -> float:
    """The spread at which `target` of held-out points fall inside (bisection; coverage rises with it)."""
    low, high = 0.05, 2.0
    for _ in range(20):
        middle = (low + high) / 2
        low, high = (middle, high) if coverage(folds, middle)[0] < target else (low, middle)
    return round((low + high) / 2, 2)


def nested_coverage(runs) -> float:
    """Coverage on each panel with the spread calibrated on the other panels only (honest)."""
    inside = []
    for task, model, panel, base, advisor in leave_one_out(runs):
        rest = [r for r in runs if (r.task, r.model) != (task, model)]
        share, _, count = coverage([(task, model, panel, base, advisor)], calibrate(list(leave_one_out(rest))))
        inside.append((share, count))
    return sum(s * c for s, c in inside) / sum(c for _, c in inside)


LOOP_TARGET = 5000  # target budgets from here up get pilots
PILOT_SHARE = 0.1  # a pilot cell may cost at most this share of the target
MAX_PILOTS = 3


def closed_loop(runs):
    """Regrets per policy over every (held-out panel, target ≥ 5,000): with 0-3 pilots proposed
    and revealed one at a time, with every small cell revealed at once, and the rule of thumb;
    also how many pilots were actually proposed, and the nested spreads used."""
    found, pilots_run, spreads, cases = defaultdict(list), defaultdict(list), {}, []
    for (task, model), panel in sorted(panels(runs).items()):
        train = [r for r in runs if (r.task, r.model) != (task, model)]
        spread = calibrate(list(leave_one_out(train)))  # tuned on the other panels only
        spreads[(task, model)] = spread
        base = next(r.score for r in panel if r.n_sft + r.n_pft == 0)
        cells = {(r.n_sft, r.n_pft): r for r in panel if r.n_sft + r.n_pft}
        by_budget = defaultdict(dict)
        for (n_sft, n_pft), run in cells.items():
            by_budget[n_sft + n_pft][n_sft / (n_sft + n_pft)] = run.score
        for target in sorted(b for b in by_budget if b >= LOOP_TARGET):
            scores = by_budget[target]
            best = max(scores.values())
            cases.append(f"{task}/{model.split(' ')[0]} at {target:,}")

            def regret(advisor):
                rec = advisor.recommend(task, model, target, 1.0, 1.0, base_score=base, ratios=list(scores))
                return best - scores[rec.sft_ratio]

            small = [cell for cell in cells if sum(cell) <= PILOT_SHARE * target]
            revealed = []
            for k in range(MAX_PILOTS + 1):
                advisor = Advisor(spread=spread).fit(train + revealed)
                found[f"advisor, {k} pilot{'s' * (k != 1)}"].append(regret(advisor))
                pilots_run[k].append(len(revealed))
                if k == MAX_PILOTS:
                    break
                left = [cell for cell in small if cells[cell] not in revealed]
                plan = propose_pilots(advisor, task, model, target, 1.0, 1.0, base_score=base, candidates=left,
                                      pilot_budget=PILOT_SHARE * target, final_ratios=list(scores), max_pilots=1,
                                      charge=False)
                revealed += [cells[(p.n_sft, p.n_pft)] for p in plan.pilots]
            found["every small cell at once"].append(regret(Advisor(spread=spread).fit(train + [cells[c] for c in small])))
            pilots_run["all"].append(len(small))
            share = rule_of_thumb(target, 1.0, 1.0)
            found["rule of thumb"].append(best - scores[share] if share in scores else np.nan)
    return found, pilots_run, spreads, cases


def loop_report(runs) -> str:
    found, pilots_run, spreads, cases = closed_loop(runs)
    rule = np.array(found["rule of thumb"])
    lines = ["| policy | pilots run (mean) | mean regret | max regret | within 0.02 of best | worse than rule of thumb | choices |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, values in found.items():
        values = np.array(values)
        key = "all" if name.startswith("every") else (int(name.split(", ")[1][0]) if name.startswith("advisor") else None)
        run = f"{np.mean(pilots_run[key]):.2f}" if key is not None else "–"
        worse = int(np.sum(values > rule + 1e-9)) if name != "rule of thumb" else "–"
        scored = values[~np.isnan(values)]
        lines.append(f"| {name} | {run} | {scored.mean():.4f} | {scored.max():.3f} | "
                     f"{np.mean(scored <= WITHIN + 1e-9):.0%} | {worse} | {len(scored)} |")
    for k in range(MAX_PILOTS):
        values = np.array(found[f"advisor, {k} pilot{'s' * (k != 1)}"])
        worse = [f"{cases[i]} ({values[i]:.3f} vs {rule[i]:.3f})" for i in np.flatnonzero(values > rule + 1e-9)]
        lines += ["", f"Worse than the rule of thumb with {k} pilot{'s' * (k != 1)}: " + ("; ".join(worse) or "never") + "."]
    lines += ["", "Interval spread used for each held-out panel (calibrated on the other six): "
              + ", ".join(f"{task}/{model.split(' ')[0]} {s}" for (task, model), s in spreads.items()) + "."]
    return "\n".join(lines)


def timings(runs, repeats: int = 7):
    """Median seconds to fit on all runs, and to recommend (warm, and first call for a panel)."""
    fits = []
    for _ in range(repeats):
        start = time.perf_counter()
        advisor = Advisor().fit(runs)
        fits.append(time.perf_counter() - start)
    firsts, warm = [], []
    for budget in (100, 1000, 5000, 20000):
        for task, model in sorted(panels(runs)):
            advisor = Advisor().fit(runs)  # a fresh fit has drawn no panel's posterior yet
            start = time.perf_counter()
            advisor.recommend(task, model, budget, 1.0, 2.0)
            firsts.append(time.perf_counter() - start)
            start = time.perf_counter()
            advisor.recommend(task, model, budget, 1.0, 2.0)
            warm.append(time.perf_counter() - start)
    return statistics.median(fits), statistics.median(firsts), max(firsts), statistics.median(warm)


def cli_seconds(repeats: int = 3) -> float:
    """Median wall time of a whole `engine advise --json` (new interpreter, imports, fit, answer)."""
    command = [sys.executable, "-m", "engine.cli", "advise", "--task", "gsm8k_math", "--model", "Llama-3.1-8B (base)",
               "--budget", "20000", "--sft-cost", "1", "--pft-cost", "1", "--json"]
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def report(runs, calibrated: bool, loop: bool = False) -> str:
    folds = list(leave_one_out(runs))
    found = regrets(folds)
    shipped = Advisor().spread
    share, width, n_points = coverage(folds, shipped)
    fit_s, first_s, first_max_s, warm_s = timings(runs)
    lines = ["| policy | mean regret | max regret | within 0.02 of best | choices |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name in ["advisor", *FIXED]:
        values = np.array(found[name])
        lines.append(f"| {name} | {values.mean():.4f} | {values.max():.3f} | "
                     f"{np.mean(values <= WITHIN + 1e-9):.0%} | {len(values)} |")
    lines += ["", f"80% intervals on held-out points (spread {shipped}): {share:.0%} inside "
                  f"({n_points} points, mean width {width:.3f})."]
    if calibrated:
        lines += [f"Calibration: spread {calibrate(folds)} puts 80% inside over all 7 folds; calibrated on "
                  f"the other 6 panels only, each panel's points fall inside {nested_coverage(runs):.0%} of the time."]
    lines += ["", f"Fit on {len(runs)} runs: {fit_s * 1e3:.0f} ms (median of 7). Recommend: {warm_s * 1e3:.1f} ms "
                  f"warm, {first_s * 1e3:.1f} ms on the first call for a panel (worst {first_max_s * 1e3:.1f} ms); "
                  f"medians over 7 panels × 4 budgets. Whole `engine advise --json`: {cli_seconds():.2f} s "
                  f"(median of 3, with the local store of this machine's home)."]
    if loop:
        lines += ["", "### Closed loop: pilots proposed, revealed, then the choice (targets ≥ 5,000)", "",
                  loop_report(runs)]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate", action="store_true", help="also measure the interval spread (about 10 s)")
    parser.add_argument("--loop", action="store_true", help="also run the closed loop with pilots (about a minute)")
    parser.add_argument("--write", action="store_true", help=f"also write {RESULTS.relative_to(RESULTS.parents[2])}")
    args = parser.parse_args(argv)
    table = report(shipped_runs(), args.calibrate, args.loop)
    print(table)
    if args.write:
        flags = " --calibrate" * args.calibrate + " --loop" * args.loop + " --write"
        command = "OMP_NUM_THREADS=1 .venv/bin/python bench/advisor_cv.py" + flags
        RESULTS.write_text(f"# Advisor: leave-one-panel-out on the shipped paper runs\n\n"
                           f"Measured {date.today().isoformat()} with `{command}` "
                           f"(2 shared CPU cores, Python {sys.version.split()[0]}).\n\n{table}\n\n{NOTES}\n"
                           + (f"\n{LOOP_NOTES}\n" if args.loop else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
