"""Tasks: where a run's SFT examples, preference pairs and held-out evaluation set come from,
and which metric scores it.

Built-in tasks use the vendored data in `assets/data/`:
- `gsm8k_math`: GSM8K questions (`gsm8k_test.jsonl`; the test split is all that is vendored,
  so training draws from it and evaluation uses questions held out of training). SFT teaches
  question → worked solution ending in `#### N` (the calculator annotations `<<…>>` are
  removed). The preference pairs are SYNTHETIC: chosen = the gold solution, rejected = the
  same solution with one calculation's result changed (where its result is shown) and a wrong
  final number — built deterministically, seeded by the question text, so every run sees the
  same pairs. Metric: exact_match on the final number (accuracy in [0, 1], as in the paper).
- `chat_preference`: SFT on the Alpaca demo rows, DPO on the ShareGPT demo pairs; evaluation
  on held-out pairs with preference_accuracy (evaluate also reports the held-out loss).
Any other name with `sft_file`/`pft_file` is a custom task over the user's files.

The held-out split is by prompt, so a question is never both trained on and evaluated: about a
tenth of the distinct prompts of the evaluation source (lowest SHA-256 of the prompt, so it is
fixed whatever the run seed) are held out, and every SFT example or pair with such a prompt is
dropped from training. Runs of one task are therefore scored on the same questions.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass

from assets import DATA_DIR
from engine.tasks import data
from engine.record.errors import UserError, unknown_choice
from engine.tasks.metrics import Metric, get_metric, parse_decimal

HELDOUT_FRACTION = 0.1
CALCULATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
SLIPS = (1, 2, 3, 4, 5, 10)


@dataclass
class Task:
    name: str
    sft_pool: list[dict]
    pref_pool: list[dict]
    eval_pool: list[dict]
    metric: Metric
    custom: bool = False  # the user's files: an empty pool means its file was not given


@dataclass
class Splits:
    sft: list[dict]
    pft: list[dict]
    eval: list[dict]


def custom_metric_default(has_pairs: bool) -> str:
    """A custom task's metric when none is named: preference_accuracy with a preference file."""
    return "preference_accuracy" if has_pairs else "rouge_l"


def get_task(name: str, *, sft_file=None, pft_file=None, eval_file=None, metric: str | None = None) -> Task:
    """A built-in task by name, or a custom task over the user's SFT and/or preference files
    (and, if given, their own evaluation file instead of a held-out tenth)."""
    if name in BUILTIN:
        if sft_file or pft_file or eval_file:
            raise UserError(f"{name} is a built-in task with its own data; give your task another name "
                            "to train on your files")
        return BUILTIN[name](metric)
    if not (sft_file or pft_file):
        error = unknown_choice("task", name, BUILTIN)
        raise UserError(f"{error}; or give an SFT and/or preference file for a custom task")
    sft = data.load_sft(sft_file) if sft_file else []
    pref = data.load_preferences(pft_file) if pft_file else []
    chosen = get_metric(metric or custom_metric_default(bool(pref)))
    if eval_file is None:
        task = assemble(name, sft, pref, chosen)
    else:
        evaluation = (data.load_preferences if chosen.needs == "pairs" else data.load_sft)(eval_file)
        task = assemble(name, sft, pref, chosen, evaluation)
    task.custom = True
    return task


def assemble(name: str, sft: list[dict], pref: list[dict], metric: Metric,
             evaluation: list[dict] | None = None) -> Task:
    """Hold out a fixed tenth of the prompts of the metric's evaluation source — or evaluate on
    the given examples — and train on the rest: no prompt is both trained on and evaluated."""
    source = pref if metric.needs == "pairs" else (sft or pref)
    if not source and evaluation is None:
        raise UserError(f"metric {metric.name} needs preference pairs: give a preference file")
    if evaluation is None:
        keys = {prompt_key(example) for example in source}
        held = set(sorted(keys, key=_digest)[: _heldout_count(len(keys))])
        evaluation = sorted((e for e in source if prompt_key(e) in held), key=lambda e: _digest(prompt_key(e)))
    else:
        held = {prompt_key(example) for example in evaluation}
    return Task(
        name=name,
        sft_pool=[e for e in sft if prompt_key(e) not in held],
        pref_pool=[e for e in pref if prompt_key(e) not in held],
        eval_pool=evaluation,
        metric=metric,
    )


def _heldout_count(n_prompts: int) -> int:
    return max(1, round(HELDOUT_FRACTION * n_prompts)) if n_prompts > 1 else 0


def prompt_key(example: dict) -> str:
    return json.dumps(example["prompt"], sort_keys=True, ensure_ascii=False)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def select(task: Task, n_sft: int, n_pft: int, n_eval: int, seed: int) -> Splits:
    """The run's data: n_sft/n_pft drawn from a seeded shuffle (a larger n extends a smaller
    one's subset), and the first n_eval of the fixed held-out pool."""
    for label, n in (("n_sft", n_sft), ("n_pft", n_pft), ("n_eval", n_eval)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise UserError(f"{label} must be a whole number ≥ 0, got {n!r}")
    return Splits(
        sft=_draw(task.sft_pool, n_sft, random.Random(f"{seed}:sft"), _too_many(task, "n_sft", n_sft)),
        pft=_draw(task.pref_pool, n_pft, random.Random(f"{seed}:pft"), _too_many(task, "n_pft", n_pft)),
        eval=_draw(task.eval_pool, n_eval, None,
                   f"n_eval={n_eval} but {task.name} has {len(task.eval_pool)} held-out examples"),
    )


def _too_many(task: Task, label: str, n: int) -> str:
    pool, flag, what = ((task.sft_pool, "--sft-file", "SFT examples") if label == "n_sft"
                        else (task.pref_pool, "--pft-file", "preference pairs"))
    if task.custom and not pool:
        return f"{label}={n} but no {flag} given: a custom task's {what} come from it"
    return f"{label}={n} but {task.name} has {len(pool)} {what} after the held-out split"


def _draw(pool: list[dict], n: int, rng: random.Random | None, too_many: str) -> list[dict]:
    if n > len(pool):
        raise UserError(too_many)
    order = list(range(len(pool)))
    if rng is not None:
        rng.shuffle(order)
    return [pool[i] for i in order[:n]]


def _gsm8k(metric: str | None) -> Task:
    sft, pref = [], []
    for where, row in data.read_rows(DATA_DIR / "gsm8k_test.jsonl"):
        question = data.to_sft({"prompt": row.get("question"), "completion": row.get("answer")}, where)["prompt"]
        answer = row["answer"]
        gold = [{"role": "assistant", "content": strip_calculations(answer)}]
        wrong = corrupt_solution(answer, random.Random(question[0]["content"]))
        sft.append({"prompt": question, "completion": gold})
        pref.append({"prompt": question, "chosen": gold,
                     "rejected": [{"role": "assistant", "content": strip_calculations(wrong)}]})
    return assemble("gsm8k_math", sft, pref, get_metric(metric or "exact_match"))


def _chat_preference(metric: str | None) -> Task:
    return assemble(
        "chat_preference",
        data.load_sft(DATA_DIR / "alpaca_en_demo.json"),
        data.load_preferences(DATA_DIR / "dpo_en_demo.json"),
        get_metric(metric or "preference_accuracy"),
    )


BUILTIN = {"gsm8k_math": _gsm8k, "chat_preference": _chat_preference}


def strip_calculations(answer: str) -> str:
    """GSM8K's calculator annotations (`<<4*2=8>>`) removed; the text around them is the solution."""
    return CALCULATION.sub("", answer)


def corrupt_solution(answer: str, rng: random.Random) -> str:
    """A plausible wrong solution: one shown calculation result changed and a wrong final number
    (the changed result itself when that calculation produced the final answer)."""
    body, _, final = answer.rpartition("####")
    gold = final.strip()
    shown = [m for m in CALCULATION.finditer(body)
             if parse_decimal(m.group(2)) is not None and body[m.end():].startswith(m.group(2))]
    if not shown:
        return f"{body}#### {_slip(gold, rng)}"
    step = rng.choice(shown)
    result = step.group(2)
    wrong = _slip(result, rng)
    tail = body[step.end() + len(result):]
    body = f"{body[: step.start()]}<<{step.group(1)}={wrong}>>{wrong}{tail}"
    produced_final = step is shown[-1] and parse_decimal(result) == parse_decimal(gold)
    return f"{body}#### {wrong if produced_final else _slip(gold, rng)}"


def _slip(number: str, rng: random.Random) -> str:
    """`number` off by a small amount, never equal to it and not negative unless it was."""
    value = parse_decimal(number)
    delta = rng.choice(SLIPS) * rng.choice((1, -1))
    wrong = value + delta if value + delta >= 0 or value < 0 else value + abs(delta)
    if "," in number and wrong == wrong.to_integral_value():
        return f"{int(wrong):,}"
    return str(wrong)
