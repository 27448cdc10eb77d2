"""Past runs: what one finetune bought (n_sft, n_pft) and what it scored, for one task and model.

Runs come from the paper's figure (shipped), from the local run store, or from a user's CSV or
JSON-lines file. Every row is checked on the way in; a bad row is one `AdvisorError` naming the
file and line, never a silent skip."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.safe_files import BadFile, csv_stream, loads, read_text, text_lines
from advisor.validate import count, fraction, positive

CONFIDENCES = ("high", "medium", "low")
REQUIRED = ("task", "model", "n_sft", "n_pft", "score")
MAX_RUNS_FILE_BYTES = 256 << 20
_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def parse_params_b(model: str) -> float | None:
    """The size a model name states, in billions ("Llama-3.1-8B" → 8.0, "SmolLM2-135M" → 0.135);
    None when the name states none. The last size in the name wins ("Qwen2.5-0.5B" → 0.5)."""
    matches = _SIZE.findall(model)
    if not matches:
        return None
    number, unit = matches[-1]
    return float(number) * (1.0 if unit.lower() == "b" else 1e-3)


def model_key(model: str) -> str:
    """One key per model however its name is written, so a run on the Hugging Face id
    "meta-llama/Llama-3.1-8B" pools with the paper's "Llama-3.1-8B (base)": no organisation
    prefix, no "(base)" tag, case folded."""
    name = model.strip().rsplit("/", 1)[-1]
    return re.sub(r"\s*\((base|pretrained)\)$", "", name, flags=re.IGNORECASE).strip().lower()


# Metric names that mean one measurement. The paper's GSM8K figure reports test accuracy: the
# share of problems whose final number equals the reference answer. The engine's gsm8k_math
# scores exactly that as `exact_match` on the final number, so the two must pool: the paper's
# panels are then the prior for the user's own GSM8K runs instead of a different metric.
METRIC_SYNONYMS = {"gsm8k_test_accuracy": "exact_match"}


def metric_key(metric: str | None) -> str:
    """One key per metric however it is named (case folded, synonyms folded); "" when unnamed."""
    name = (metric or "").strip().lower()
    return METRIC_SYNONYMS.get(name, name)


@dataclass(frozen=True)
class Run:
    """One finished finetune: `n_sft` SFT examples then `n_pft` preference pairs on `model`,
    scoring `score` (a fraction in [0, 1]) on `task`. n_sft = n_pft = 0 is the base model.
    `confidence` (high/medium/low, or None for a measured run) says how far to trust `score`."""

    task: str
    model: str
    params_b: float | None
    n_sft: int
    n_pft: int
    score: float
    metric: str
    source: str
    confidence: str | None = None

    def __post_init__(self):
        for name in ("task", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise AdvisorError(f"{name} must be a non-empty name, got {value!r}")
            object.__setattr__(self, name, value.strip())
        params_b = self.params_b
        if params_b is None or params_b == "":
            params_b = parse_params_b(self.model)
            if params_b is None:
                raise AdvisorError(f"params_b is missing and the model name {self.model!r} states no size")
        object.__setattr__(self, "params_b", positive("params_b", params_b))
        object.__setattr__(self, "n_sft", count("n_sft", self.n_sft))
        object.__setattr__(self, "n_pft", count("n_pft", self.n_pft))
        object.__setattr__(self, "score", fraction("score", self.score))
        object.__setattr__(self, "metric", "" if self.metric is None else str(self.metric))
        object.__setattr__(self, "source", str(self.source))
        confidence = self.confidence or None
        if confidence is not None and confidence not in CONFIDENCES:
            raise AdvisorError(f"confidence must be one of {', '.join(CONFIDENCES)} or empty, got {confidence!r}")
        object.__setattr__(self, "confidence", confidence)


def _run(fields: dict, path: Path, line: int) -> Run:
    """A Run from one row's fields; any problem is raised as '<file>:<line>: <problem>'."""
    where = f"{path}:{line}"
    missing = [name for name in REQUIRED if fields.get(name) in (None, "")]
    if missing:
        raise AdvisorError(f"{where}: missing {', '.join(missing)}")
    try:
        return Run(task=fields["task"], model=fields["model"], params_b=fields.get("params_b"),
                   n_sft=fields["n_sft"], n_pft=fields["n_pft"], score=fields["score"],
                   metric=fields.get("metric") or "", source=fields.get("source") or f"{path.name}:{line}",
                   confidence=fields.get("confidence") or None)
    except AdvisorError as exc:
        raise AdvisorError(f"{where}: {exc}") from None


def _csv_runs(path: Path, text: str) -> list[Run]:
    reader = csv.DictReader(csv_stream(text))
    header = reader.fieldnames or []
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise AdvisorError(f"{path}:1: the header lacks column(s) {', '.join(missing)}")
    runs = []
    for row in reader:
        if None in row:
            raise AdvisorError(f"{path}:{reader.line_num}: more values than the header has columns")
        runs.append(_run(row, path, reader.line_num))
    return runs


def _jsonl_runs(path: Path, text: str) -> list[Run]:
    runs = []
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            fields = loads(line)
        except json.JSONDecodeError as exc:
            raise AdvisorError(f"{where}: not valid JSON ({exc.msg})") from None
        except BadFile as exc:
            raise AdvisorError(f"{where}: {exc}") from None
        if not isinstance(fields, dict):
            raise AdvisorError(f"{where}: expected a JSON object, got {type(fields).__name__}")
        runs.append(_run(fields, path, number))
    return runs


READERS = {".csv": _csv_runs, ".jsonl": _jsonl_runs}


def load_runs(path: str | Path) -> list[Run]:
    """Every run in a .csv or .jsonl file (columns/keys: task, model, n_sft, n_pft, score and
    optionally params_b, metric, source, confidence; other columns are ignored)."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise AdvisorError(f"{path}: a runs file must end in .csv or .jsonl")
    try:
        text = read_text(path, "runs file", max_bytes=MAX_RUNS_FILE_BYTES)
    except BadFile as exc:
        raise AdvisorError(str(exc)) from None
    runs = reader(path, text)
    if not runs:
        raise AdvisorError(f"{path}: the runs file holds no runs")
    return runs


def shipped_runs() -> list[Run]:
    """The paper's runs, read off its main-results figure (assets/data/paper_runs_digitized.csv)."""
    from assets import PAPER_RUNS

    return load_runs(PAPER_RUNS)
