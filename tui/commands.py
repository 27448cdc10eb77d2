"""The command palette (ctrl+p): the app's main actions by name, next to Textual's own commands.

On the plan screen: launch the recommended run, switch the plot, measure the base model's score,
forecast the run, propose and run pilots; everywhere: the past runs."""

from __future__ import annotations

from functools import partial
from typing import Callable

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.screens.plan import PlanScreen


class BudgetCommands(Provider):
    """budgettui's commands: each is a name, what it does, and the action it runs."""

    def commands(self) -> list[tuple[str, Callable[[], object], str]]:
        found = []
        screen = self.screen
        if isinstance(screen, PlanScreen):
            found += [
                ("Launch run", screen.action_launch, "confirm and start the engine on the recommended split"),
                ("Switch plot", screen.action_toggle_plot, "budget line ↔ iso-score curves"),
                ("Measure base score", screen.action_measure_base_score,
                 "score the untrained model on the task's held-out set"),
                ("Forecast this run", screen.action_forecast,
                 "time and memory per stage on this machine (calibrates it first when it must)"),
                ("Propose pilot runs", screen.action_plan_pilots, "the small runs worth paying for before the big one"),
                ("Run the pilots", screen.action_run_pilots, "launch the proposed pilots one after another"),
            ]
        found.append(("Past runs", partial(self.app.run_action, "show_runs"), "every run in the store; Enter opens one"))
        return found

    async def discover(self) -> Hits:
        for name, command, help_text in self.commands():
            yield DiscoveryHit(name, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, command, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, text=name, help=help_text)
