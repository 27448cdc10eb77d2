"""How a finished model is scored. Adding a metric is one function plus the `@metric` decorator.

A metric names what it needs from the model (`needs`):
- "text": greedy generations, scored against reference answers (kind "generation");
- "pairs": log-probs of the chosen and rejected answer of each preference pair (kind "scoring");
- "completions": log-probs of reference answers (kind "scoring").
`engine.tasks.evaluate` produces exactly that input and calls the function with the list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Callable

from engine.record.errors import unknown_choice

KINDS = {"text": "generation", "pairs": "scoring", "completions": "scoring"}
NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
ANSWER_IS = re.compile(r"answer is", re.IGNORECASE)


@dataclass(frozen=True)
class Scored:
    """One answer under the model: summed log-prob of its tokens (and under the reference model)."""

    logp: float
    n_tokens: int
    ref_logp: float | None = None

    @property
    def reward(self) -> float:
        """DPO's implicit reward up to beta (logπ − logπ_ref), or logπ when there is no reference."""
        return self.logp if self.ref_logp is None else self.logp - self.ref_logp


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "generation" | "scoring"
    needs: str  # "text" | "pairs" | "completions"
    higher_is_better: bool
    score: Callable[[list], float]
    description: str
    lower: float | None = 0.0  # the value range the metric can take (None: unbounded)
    upper: float | None = 1.0

    @property
    def direction(self) -> dict:
        """What the store records with every evaluation, so only true scores are ever fitted."""
        return {"higher_is_better": self.higher_is_better, "lower": self.lower, "upper": self.upper}


METRICS: dict[str, Metric] = {}


def metric(name: str, *, needs: str, higher_is_better: bool = True, lower: float | None = 0.0,
           upper: float | None = 1.0):
    """Register `fn(items) -> float` as a metric (items as described in the module docstring);
    `lower`/`upper` bound its values (None: unbounded on that side)."""

    def register(fn):
        description = (fn.__doc__ or name).strip().splitlines()[0]
        METRICS[name] = Metric(name, KINDS[needs], needs, higher_is_better, fn, description, lower, upper)
        return fn

    return register


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise unknown_choice("metric", name, METRICS)
    return METRICS[name]


def final_number(text: str) -> Decimal | None:
    """The answer of a worked solution: the number after the last `####`, else after the last
    "the answer is", else the last number in the text; commas dropped, 18.0 equals 18."""
    for marker in (text.rfind("####"), _last_match_end(ANSWER_IS, text)):
        if marker >= 0:
            found = NUMBER.search(text, marker)
            if found:
                return parse_decimal(found.group())
    numbers = NUMBER.findall(text)
    return parse_decimal(numbers[-1]) if numbers else None


def _last_match_end(pattern: re.Pattern, text: str) -> int:
    matches = list(pattern.finditer(text))
    return matches[-1].end() if matches else -1


def parse_decimal(number: str) -> Decimal | None:
    """A number as written in an answer ("1,234.5" → 1234.5), exactly; None when it is not one.
    The one reader of numbers in answers, for the metrics and the tasks' synthetic pairs."""
    try:
        return Decimal(number.replace(",", ""))
    except InvalidOperation:
        return None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# a ratio or clock time (6:1, 5:45), a fraction (-1/3), or a number (1,234.5): first that fits
ANSWER_VALUE = re.compile(rf"(?P<ratio>-?\d+(?:\.\d+)?:\d+(?:\.\d+)?)|(?P<fraction>-?\d+/\d+)|(?P<number>{NUMBER.pattern})")


@dataclass(frozen=True)
class Answer:
    """A final answer normalised for comparison: kind "number" (a Fraction, so 0.5 == 1/2 and
    18.0 == 18), "ratio" (a pair: 6:1 or the time 5:45) or "text" (lower-cased words)."""

    kind: str
    value: object


def final_answer(text: str) -> Answer | None:
    """What a solution answers: the part after the last `####` (else after the last "the answer
    is"), whose first number, fraction or ratio it is — or, without a marker, the last one in the
    text; with none at all, its words (so "Bryan." answers "Bryan"). None for an empty answer."""
    markers = [m for m in (text.rfind("####"), _last_match_end(ANSWER_IS, text)) if m >= 0]
    segment = text[max(markers):] if markers else text
    values = list(ANSWER_VALUE.finditer(segment))
    found = values[0] if markers and values else (values[-1] if values else None)
    if found is not None:
        value = _answer_value(found)
        if value is not None:
            return value
    spoken = " ".join(words(segment))
    return Answer("text", spoken) if spoken else None


def _answer_value(match: re.Match) -> Answer | None:
    text = match.group().replace(",", "")
    try:
        if match.lastgroup == "ratio":
            left, right = text.split(":")
            return Answer("ratio", (Fraction(left), Fraction(right)))
        return Answer("number", Fraction(text))
    except (ValueError, ZeroDivisionError):  # 1/0
        return None


@metric("exact_match", needs="text")
def exact_match(items: list[tuple[str, str]]) -> float:
    """Share of generations whose final answer equals the reference's (GSM8K accuracy): numbers,
    fractions, ratios and times by value, answers without a number as text."""
    return _mean([float(same_answer(prediction, reference)) for prediction, reference in items])


def same_answer(prediction: str, reference: str) -> bool:
    gold = final_answer(reference)
    if gold is None:
        return False
    if gold.kind == "text":  # a spoken answer: the prediction's words, even if it adds a number
        marker = max(prediction.rfind("####"), _last_match_end(ANSWER_IS, prediction))
        return " ".join(words(prediction[marker:] if marker >= 0 else prediction)) == gold.value
    return final_answer(prediction) == gold


def exact_match_warnings(references: list[str]) -> list[str]:
    """What a user should know before exact_match scores these references: those it cannot
    read (always scored wrong) and those it compares as text rather than as numbers."""
    answers = [final_answer(reference) for reference in references]
    warnings = []
    for kind, says in ((None, "have no answer exact_match can read; every generation for them scores 0"),
                       ("text", "have no number; exact_match compares them as text, ignoring case and punctuation")):
        which = [ref for ref, answer in zip(references, answers) if (answer.kind if answer else None) == kind]
        if which:
            example = which[0].strip().splitlines()[-1][:40] if which[0].strip() else ""
            warnings.append(f"{len(which)} of {len(references)} references {says} (e.g. {example!r})")
    return warnings


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence by dynamic programming over one rolling row."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of two texts over lower-cased word tokens."""
    pred, ref = words(prediction), words(reference)
    common = lcs_length(pred, ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@metric("rouge_l", needs="text")
def rouge_l(items: list[tuple[str, str]]) -> float:
    """Mean ROUGE-L F1 of generations against the reference answers."""
    return _mean([rouge_l_f1(prediction, reference) for prediction, reference in items])


@metric("preference_accuracy", needs="pairs")
def preference_accuracy(items: list[tuple[Scored, Scored]]) -> float:
    """Share of held-out pairs whose chosen answer gets the higher implicit reward (ties lose)."""
    return _mean([float(chosen.reward > rejected.reward) for chosen, rejected in items])


@metric("heldout_loss", needs="completions", higher_is_better=False, upper=None)
def heldout_loss(items: list[Scored]) -> float:
    """Mean negative log-likelihood per token of the held-out reference answers."""
    tokens = sum(item.n_tokens for item in items)
    return -sum(item.logp for item in items) / tokens if tokens else 0.0
