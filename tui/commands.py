"""The command palette (ctrl+p): the app's main actions by name, next to Textual's own commands.

On the plan screen: launch the recommended run, switch the plot, and measure the base model's
score where the plan screen offers it; everywhere: the past runs."""

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
            ]
            measure = getattr(screen, "action_measure_base_score", None)  # offered by plan screens that can
            if measure is not None:
                found.append(("Measure base score", measure, "score the untrained model on the task's held-out set"))
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
