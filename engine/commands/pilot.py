"""`engine pilot`: the few small runs worth making before spending the budget — those that most
lower the expected regret of the split chosen at the budget — or why none is worth its cost.
Fits the advisor on the past runs each time; never loads torch or textual.
"""

from __future__ import annotations

import argparse

from engine.commands.planning import add_panel_arguments, amounts, checked, fitted_advisor, shares


def register(sub: argparse._SubParsersAction) -> None:
    from advisor.validate import positive

    parser = sub.add_parser("pilot", help="propose the small pilot runs worth making before spending the budget",
                            description=__doc__.split("\n\n")[0])
    add_panel_arguments(parser)
    parser.add_argument("--pilot-budget", type=checked(positive, "the pilot budget"), metavar="P",
                        help="most money for all pilots together (default: a tenth of the budget)")
    parser.add_argument("--pilot-budgets", type=amounts, metavar="B,B,…",
                        help="the money one pilot may cost, e.g. 100,500 (default: P, P/2, P/4, P/8)")
    parser.add_argument("--ratios", type=shares, metavar="R,R,…",
                        help="SFT shares a pilot may have, e.g. 1,0.5,0 (default: 1,0.75,0.5,0.25,0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=pilot)


def pilot(args: argparse.Namespace) -> int:
    from advisor.pilot import propose_pilots

    advisor, params_b = fitted_advisor(args)
    plan = propose_pilots(advisor, args.task, args.model, args.budget, args.sft_cost, args.pft_cost,
                          metric=args.metric, params_b=params_b, base_score=args.base_score,
                          pilot_budget=args.pilot_budget, pilot_budgets=args.pilot_budgets, ratios=args.ratios)
    if args.json:
        import json

        print(json.dumps(plan.to_dict()))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(markup=False)  # the task and model are the user's words
    if plan.pilots:
        table = Table(title=f"pilot runs for {args.task} · {args.model} · budget {args.budget:,.2f}",
                      caption="run them in this order; each refits the advisor", title_justify="left")
        for column in ("", "SFT", "pairs", "cost", "expected regret after"):
            table.add_column(column, justify="left" if not column else "right")
        for number, step in enumerate(plan.pilots, start=1):
            table.add_row(f"pilot {number}", f"{step.n_sft:,}", f"{step.n_pft:,}", f"{step.cost:,.2f}",
                          f"{step.expected_regret_after:.4f}")
        console.print(table)
    console.print(f"expected regret of the choice at {args.budget:,.2f}: {plan.expected_regret_now:.4f} now, "
                  f"{plan.expected_regret_after:.4f} after the pilots (cost {plan.pilot_cost:,.2f})", highlight=False)
    console.print(plan.reason, highlight=False)
    return 0
