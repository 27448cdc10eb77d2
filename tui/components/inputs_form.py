"""The plan's inputs: one compact field per input, validated as typed, the reason shown beneath."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Static

from tui.inputs import FIELDS, PlanInputs, as_texts, validate
from tui.messages import InputsChanged


class InputsForm(VerticalScroll):
    """Posts `InputsChanged` after every edit; shows each field's reason until it is fixed."""

    BORDER_TITLE = "Plan"

    def __init__(self, initial: PlanInputs | dict[str, str], **kwargs):
        super().__init__(**kwargs)
        self._initial = as_texts(initial) if isinstance(initial, PlanInputs) else dict(initial)

    def compose(self) -> ComposeResult:
        for spec in FIELDS:
            yield Label(spec.label, classes="field-label")
            yield Input(self._initial.get(spec.name, ""), placeholder=spec.placeholder, id=f"in-{spec.name}",
                        compact=True, select_on_focus=False)
            yield Static("", id=f"why-{spec.name}", classes="reason")

    def on_mount(self) -> None:
        self.check()

    def texts(self) -> dict[str, str]:
        return {spec.name: self.query_one(f"#in-{spec.name}", Input).value for spec in FIELDS}

    def suggest(self, tasks: list[str], models: list[str]) -> None:
        """Offer the tasks and models the advisor has seen as completions."""
        self.query_one("#in-task", Input).suggester = SuggestFromList(tasks, case_sensitive=False)
        self.query_one("#in-model", Input).suggester = SuggestFromList(models, case_sensitive=False)

    def show_reason(self, name: str, reason: str) -> None:
        why = self.query_one(f"#why-{name}", Static)
        why.update(Text(reason))  # plain text, never markup
        why.set_class(bool(reason), "-shown")
        self.query_one(f"#in-{name}", Input).set_class(bool(reason), "-invalid")

    def check(self) -> tuple[PlanInputs | None, dict[str, str]]:
        inputs, errors = validate(self.texts())
        for spec in FIELDS:
            self.show_reason(spec.name, errors.get(spec.name, ""))
        return inputs, errors

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        inputs, errors = self.check()
        self.post_message(InputsChanged(inputs, errors))
