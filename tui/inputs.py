"""The plan's inputs and their validation, shared by the command-line flags and the form.

One parser per field turns text into a value or raises `ValueError` whose message is the reason
shown beside the field (and on stderr for a bad flag), so the two paths can never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from advisor.errors import AdvisorError
from advisor.validate import BadNumber, check_purchase, fraction, label_money, non_negative, positive


@dataclass(frozen=True)
class PlanInputs:
    """What the user plans: the money, the two label prices and where it will be spent. A GPU-hour
    price adds each example's measured GPU time to its price (`engine.record.compute`)."""

    task: str
    model: str
    budget: float
    sft_cost: float
    pft_cost: float
    params_b: float | None = None
    base_score: float | None = None
    compute_cost: float | None = None
    gpu_hour_price: float | None = None

    @property
    def label_budget(self) -> float:
        """The money left for labels once compute is paid for."""
        return self.budget - (self.compute_cost or 0.0)


def _parser(check: Callable[[str, str], float]) -> Callable[[str], float]:
    """A field parser from one of the advisor's number checks (the one number parser of the
    project); its bare reason becomes the message beside the field."""

    def parse(text: str) -> float:
        try:
            return check("value", text)
        except BadNumber as exc:
            raise ValueError(exc.reason) from None

    return parse


def parse_name(text: str) -> str:
    name = text.strip()
    if not name:
        raise ValueError("required")
    return name


parse_positive = _parser(positive)
parse_non_negative = _parser(non_negative)
parse_fraction = _parser(fraction)


@dataclass(frozen=True)
class Field:
    """One input: its flag/attribute name, its label, its parser and whether it may be left empty."""

    name: str
    label: str
    parse: Callable[[str], object]
    required: bool = True
    placeholder: str = ""


FIELDS: tuple[Field, ...] = (
    Field("task", "Task", parse_name, placeholder="e.g. gsm8k_math"),
    Field("model", "Model", parse_name, placeholder="e.g. Llama-3.1-8B (base)"),
    Field("budget", "Total budget", parse_positive, placeholder="money, e.g. 5000"),
    Field("sft_cost", "Cost per SFT example", parse_positive, placeholder="e.g. 1.0"),
    Field("pft_cost", "Cost per preference pair", parse_positive, placeholder="e.g. 0.5"),
    Field("compute_cost", "Compute spend (optional)", parse_non_negative, False, "money taken off the budget"),
    Field("gpu_hour_price", "GPU-hour price (optional)", parse_non_negative, False,
          "adds each example's GPU time"),
    Field("params_b", "Model size, B params (optional)", parse_positive, False, "from past runs if known"),
    Field("base_score", "Base model score (optional)", parse_fraction, False, "0–1, if measured"),
)
FIELD_BY_NAME = {f.name: f for f in FIELDS}


def parse_value(name: str, text: str):
    """The value of one field from its text; None for an empty optional field; ValueError says why not."""
    spec = FIELD_BY_NAME[name]
    if not text.strip() and not spec.required:
        return None
    return spec.parse(text)


def validate(texts: dict[str, str]) -> tuple[PlanInputs | None, dict[str, str]]:
    """Parse every field; the inputs when all are valid, and the reason for each field that is not."""
    values, errors = {}, {}
    for spec in FIELDS:
        try:
            values[spec.name] = parse_value(spec.name, texts.get(spec.name, ""))
        except ValueError as exc:
            errors[spec.name] = str(exc)
    if "budget" not in errors and "compute_cost" not in errors:
        money = label_money(values["budget"], values.get("compute_cost"))
        if money is None:
            errors["compute_cost"] = "leaves nothing of the budget for labels"
        elif "sft_cost" not in errors and "pft_cost" not in errors:
            try:
                check_purchase(money, values["sft_cost"], values["pft_cost"])
            except AdvisorError:
                cheaper = min(("sft_cost", "pft_cost"), key=values.__getitem__)
                errors[cheaper] = "so cheap that the budget buys more examples than can be counted"
    if errors:
        return None, errors
    return PlanInputs(**values), {}


def as_texts(inputs: PlanInputs) -> dict[str, str]:
    """The form's text for each field (the inverse of `validate`)."""
    def text(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return str(value)

    return {spec.name: text(getattr(inputs, spec.name)) for spec in FIELDS}
