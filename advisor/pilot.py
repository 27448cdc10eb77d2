"""Pilot runs worth paying for: the few small runs that, measured before the big one, most lower
the expected regret of the split chosen at the target budget.

Value of information over the advisor's posterior draws. Each draw is a possible true surface.
For one draw taken as the truth, a pilot's score is what that surface gives at the pilot's
(n_sft, n_pft) plus measurement noise (the fitted residual scale, `Advisor.sigma_`). Conditioning
on that score re-weights every draw by its likelihood (importance weights; the truth's own draw
is left out, so the figure is not flattered by a draw that sees itself); the split chosen at the
budget is then the one with the highest re-weighted mean score. Regret = the truth's best score
on the budget line − its score at the chosen split; averaged over truths it is the expected
regret after the pilots, and with no pilot (equal weights) the expected regret now.

Pilots are picked greedily, each the one that most lowers the expected regret given those
before it, until three are picked, the pilot budget is spent, or no remaining one is worth its
cost. A pilot's cost is priced in score: what its money would add to the final run at the
chosen split. A pilot worth running lowers the expected regret by more than that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from advisor import curves
from advisor.errors import AdvisorError
from advisor.recommend import buy
from advisor.validate import fraction, positive

MAX_PILOTS = 3
PILOT_SHARE = 0.1  # default pilot budget: a tenth of the target budget
PILOT_RATIOS = (1.0, 0.75, 0.5, 0.25, 0.0)  # the paper's grid of SFT shares
PILOT_STEPS = 4  # default pilot budgets: P, P/2, P/4, P/8
FINAL_SHARES = np.linspace(1.0, 0.0, 21)  # the shares the final choice is made among
CERTAIN = 0.001  # an expected regret below this is a choice already made


@dataclass(frozen=True)
class Pilot:
    """One pilot run to make, and the expected regret at the budget once it (and the pilots
    before it) is measured."""

    n_sft: int
    n_pft: int
    cost: float
    expected_regret_after: float

    def to_dict(self) -> dict:
        return {"n_sft": self.n_sft, "n_pft": self.n_pft, "cost": self.cost,
                "expected_regret_after": self.expected_regret_after}


@dataclass(frozen=True)
class PilotPlan:
    """The pilots in the order to run them (possibly none), their total cost, the expected regret
    of the choice at the budget now and after all of them, and the reason in one sentence."""

    pilots: list[Pilot] = field(default_factory=list)
    pilot_cost: float = 0.0
    expected_regret_now: float = 0.0
    expected_regret_after: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict:
        return {"pilots": [pilot.to_dict() for pilot in self.pilots], "pilot_cost": self.pilot_cost,
                "expected_regret_now": self.expected_regret_now,
                "expected_regret_after": self.expected_regret_after, "reason": self.reason}


def pilot_grid(pilot_budgets, ratios, sft_cost: float, pft_cost: float) -> list[tuple[int, int]]:
    """Every (n_sft, n_pft) a pilot budget buys at an SFT share, each once, none empty."""
    cells = [buy(fraction("an SFT share", r), positive("a pilot budget", b), sft_cost, pft_cost)
             for b in pilot_budgets for r in ratios]
    return [cell for cell in dict.fromkeys(cells) if sum(cell) > 0]


def propose_pilots(advisor, task: str, model: str, budget: float, sft_cost: float, pft_cost: float, *,
                   metric: str | None = None, params_b: float | None = None, base_score: float | None = None,
                   pilot_budget: float | None = None, pilot_budgets=None, ratios=None, candidates=None,
                   final_ratios=None, max_pilots: int = MAX_PILOTS, charge: bool = True,
                   random_state: int = 0) -> PilotPlan:
    """Up to `max_pilots` pilot runs costing at most `pilot_budget` (default a tenth of `budget`).

    Candidates are `candidates` ((n_sft, n_pft) pairs) or the grid of `pilot_budgets` (default
    P, P/2, P/4, P/8) × `ratios` (default the paper's SFT shares). `final_ratios` restricts the
    final choice at `budget` as in `recommend`. `charge=False` prices pilots at nothing (when
    their money is not taken from anything, as in a benchmark that reveals known points)."""
    budget, sft_cost, pft_cost = positive("budget", budget), positive("sft_cost", sft_cost), positive("pft_cost", pft_cost)
    cap = budget * PILOT_SHARE if pilot_budget is None else positive("pilot_budget", pilot_budget)
    if cap > budget:
        raise AdvisorError(f"the pilot budget {cap:g} is more than the budget {budget:g}")
    if not 1 <= int(max_pilots) <= MAX_PILOTS:
        raise AdvisorError(f"max_pilots must be 1 to {MAX_PILOTS}, got {max_pilots!r}")
    cells = _candidates(candidates, pilot_budgets, ratios, cap, sft_cost, pft_cost)
    costs = np.array([s * sft_cost + p * pft_cost for s, p in cells])
    if cells and costs.max() > cap * (1 + 1e-9):
        worst = cells[int(costs.argmax())]
        raise AdvisorError(f"a pilot of {worst[0]} SFT examples and {worst[1]} pairs costs {costs.max():g}, "
                           f"more than the pilot budget {cap:g}")

    mean_phi, draws, size = advisor.surfaces(task, model, metric=metric, params_b=params_b, base_score=base_score)
    p = curves.N_PANEL

    def surface(n_sft, n_pft):  # (draws, points)
        return curves.score(draws[:, None, :p], draws[:, None, p:], np.asarray(n_sft, float)[None],
                            np.asarray(n_pft, float)[None], size)

    shares = FINAL_SHARES if final_ratios is None else np.array([fraction("allowed SFT share", r) for r in final_ratios])
    splits = [split for split in dict.fromkeys(buy(r, budget, sft_cost, pft_cost) for r in shares) if sum(split) > 0]
    if not splits:
        raise AdvisorError(f"a budget of {budget:g} buys no example at these costs")
    final = surface(*zip(*splits))
    n_draws = len(final)
    chosen_now = int(final.mean(axis=0).argmax())
    regret_now = float(np.mean(final.max(axis=1) - final[:, chosen_now]))
    if not cells:
        return PilotPlan([], 0.0, regret_now, regret_now,
                         f"no pilot fits in the pilot budget {cap:,.2f} at these costs")

    at_cells = surface(*zip(*cells))
    noise = max(float(advisor.sigma_), 1e-3)
    observed = at_cells + noise * np.random.default_rng(random_state).standard_normal(at_cells.shape)
    own = np.eye(n_draws, dtype=bool)

    def loglik(c):  # [truth, draw]: the truth's observed pilot score under each draw
        return -0.5 * ((observed[:, c, None] - at_cells[None, :, c]) / noise) ** 2

    def regret_after(logl):
        masked = np.where(own, -np.inf, logl)
        weights = np.exp(masked - logsumexp(masked, axis=1, keepdims=True))
        choice = (weights @ final).argmax(axis=1)
        return float(np.mean(final.max(axis=1) - final[np.arange(n_draws), choice]))

    share_now = splits[chosen_now][0] / sum(splits[chosen_now])
    base_score_now = float(final[:, chosen_now].mean())

    def worth(money):  # score the pilot's money would add to the final run at the chosen split
        if not charge:
            return 0.0
        more = buy(share_now, budget + money, sft_cost, pft_cost)
        return max(float(surface([more[0]], [more[1]]).mean()) - base_score_now, 0.0)

    pilots, spent, current, logl = [], 0.0, regret_now, np.zeros((n_draws, n_draws))
    best_rejected = None
    for _ in range(int(max_pilots)):
        best = None
        for c, cell in enumerate(cells):
            if cell in [(pilot.n_sft, pilot.n_pft) for pilot in pilots] or spent + costs[c] > cap * (1 + 1e-9):
                continue
            after = regret_after(logl + loglik(c))
            net = current - after - worth(costs[c])
            if best is None or net > best[0] + 1e-12:
                best = (net, c, after)
        if best is None:
            break
        net, c, after = best
        if net <= 0 or current - after < 1e-4:
            best_rejected = (cells[c], costs[c], current - after, worth(costs[c]))
            break
        logl = logl + loglik(c)
        spent += float(costs[c])
        current = after
        pilots.append(Pilot(int(cells[c][0]), int(cells[c][1]), float(costs[c]), after))
    return PilotPlan(pilots, spent, regret_now, current, _reason(pilots, spent, budget, regret_now, current, best_rejected))


def _candidates(candidates, pilot_budgets, ratios, cap, sft_cost, pft_cost) -> list[tuple[int, int]]:
    if candidates is not None:
        cells = []
        for cell in candidates:
            try:
                n_sft, n_pft = (int(v) for v in cell)
            except (TypeError, ValueError):
                raise AdvisorError(f"a pilot candidate must be (n_sft, n_pft), got {cell!r}") from None
            if n_sft < 0 or n_pft < 0:
                raise AdvisorError(f"a pilot candidate must count 0 or more examples, got {cell!r}")
            cells.append((n_sft, n_pft))
        return [cell for cell in dict.fromkeys(cells) if sum(cell) > 0]
    budgets = pilot_budgets if pilot_budgets is not None else [cap / 2 ** k for k in range(PILOT_STEPS)]
    budgets = [b for b in budgets if positive("a pilot budget", b) >= min(sft_cost, pft_cost)]
    return pilot_grid(budgets, PILOT_RATIOS if ratios is None else ratios, sft_cost, pft_cost)


def _reason(pilots, spent, budget, now, after, rejected) -> str:
    if pilots:
        runs = f"{len(pilots)} pilot runs costing {spent:,.2f} lower" if len(pilots) > 1 else \
            f"1 pilot run costing {spent:,.2f} lowers"
        return (f"{runs} the expected regret of the choice at {budget:,.2f} "
                f"from {now:.4f} to {after:.4f}")
    if now < CERTAIN:
        return (f"no pilot is worth its cost: the choice at {budget:,.2f} is already nearly certain "
                f"(expected regret {now:.4f})")
    (n_sft, n_pft), cost, gain, price = rejected
    return (f"no pilot is worth its cost: the best ({n_sft} SFT, {n_pft} pairs, cost {cost:,.2f}) lowers the "
            f"expected regret by {gain:.4f}, while its money would add {price:.4f} to the final run")
