"""Tasks: synthetic GSM8K pairs, a fixed held-out split by prompt, and seeded subsets."""

import json
import random
import re

import pytest

from engine.record.errors import UserError
from engine.tasks.metrics import final_number
from engine.tasks.catalog import corrupt_solution, get_task, prompt_key, select, strip_calculations


@pytest.fixture(scope="module")
def gsm8k():
    return get_task("gsm8k_math")


def _answer(messages):
    return messages[0]["content"]


def test_gsm8k_pools_and_split_sizes(gsm8k):
    assert gsm8k.metric.name == "exact_match"
    assert len(gsm8k.eval_pool) == 132  # a tenth of 1,319 distinct questions
    assert len(gsm8k.sft_pool) == len(gsm8k.pref_pool) == 1319 - 132
    example = gsm8k.sft_pool[0]
    assert example["prompt"][0]["role"] == "user" and "<<" not in _answer(example["completion"])
    assert _answer(example["completion"]).rstrip().split("\n")[-1].startswith("#### ")


def test_every_rejected_solution_differs_and_has_a_wrong_final_number(gsm8k):
    for pair in gsm8k.pref_pool:
        chosen, rejected = _answer(pair["chosen"]), _answer(pair["rejected"])
        assert chosen != rejected
        assert final_number(rejected) != final_number(chosen)
        assert final_number(rejected) >= 0 or final_number(chosen) < 0


def test_corruption_is_deterministic_per_question(gsm8k):
    again = get_task("gsm8k_math")
    assert again.pref_pool == gsm8k.pref_pool
    answer = "She has 3+4=<<3+4=7>>7 apples and 7*2=<<7*2=14>>14 pears.\n#### 14"
    first = corrupt_solution(answer, random.Random("q"))
    assert first == corrupt_solution(answer, random.Random("q"))
    # whichever step is hit, its shown result is wrong and the final number is wrong
    outcomes = {corrupt_solution(answer, random.Random(f"q{i}")) for i in range(40)}
    for wrong in outcomes:
        shown = strip_calculations(wrong)
        assert shown != strip_calculations(answer) and final_number(shown) != 14
        steps = re.findall(r"=(-?\d+) (?:apples|pears)", shown)
        assert sum(got != gold for got, gold in zip(steps, ["7", "14"])) == 1  # exactly one step is wrong


def test_a_wrong_last_step_carries_into_the_final_answer():
    answer = "It is 6*7=<<6*7=42>>42\n#### 42"
    wrong = strip_calculations(corrupt_solution(answer, random.Random(0)))
    step, final = wrong.split("\n")
    assert step.split("=")[1] == final.removeprefix("#### ") != "42"


def test_subsets_are_seeded_nested_and_never_touch_the_held_out_prompts(gsm8k):
    a = select(gsm8k, 100, 50, 20, seed=1)
    assert a == select(gsm8k, 100, 50, 20, seed=1)
    assert a.sft != select(gsm8k, 100, 50, 20, seed=2).sft
    assert select(gsm8k, 200, 80, 40, seed=1).sft[:100] == a.sft  # a bigger budget extends a smaller one
    assert a.eval == gsm8k.eval_pool[:20] == select(gsm8k, 10, 0, 20, seed=9).eval  # same questions every run
    held = {prompt_key(e) for e in gsm8k.eval_pool}
    trained = {prompt_key(e) for e in gsm8k.sft_pool + gsm8k.pref_pool}
    assert held.isdisjoint(trained)
    assert len({prompt_key(e) for e in a.sft}) == 100


def test_asking_for_more_than_exist_says_how_many_there_are(gsm8k):
    with pytest.raises(UserError, match=r"^n_sft=5000 but gsm8k_math has 1187 SFT examples after the held-out split$"):
        select(gsm8k, 5000, 0, 0, seed=0)
    with pytest.raises(UserError, match=r"^n_pft=1188 but gsm8k_math has 1187 preference pairs"):
        select(gsm8k, 0, 1188, 0, seed=0)
    with pytest.raises(UserError, match=r"^n_eval=500 but gsm8k_math has 132 held-out examples$"):
        select(gsm8k, 0, 0, 500, seed=0)
    with pytest.raises(UserError, match=r"^n_pft must be a whole number ≥ 0, got -1$"):
        select(gsm8k, 1, -1, 0, seed=0)


def test_chat_preference_holds_out_pairs_and_trains_on_alpaca():
    task = get_task("chat_preference")
    assert task.metric.name == "preference_accuracy"
    assert len(task.sft_pool) == 999 and len(task.eval_pool) == 30 and len(task.pref_pool) == 270
    assert all({"prompt", "chosen", "rejected"} <= set(e) for e in task.eval_pool)
    held = {prompt_key(e) for e in task.eval_pool}
    assert held.isdisjoint(prompt_key(e) for e in task.pref_pool)


def test_unknown_task_and_metric_suggest_the_closest_name():
    with pytest.raises(UserError, match=r"unknown task 'gsm8k'; known: chat_preference, gsm8k_math "
                                        r"\(did you mean 'gsm8k_math'\?\); or give an SFT and/or preference file"):
        get_task("gsm8k")
    with pytest.raises(UserError, match=r"unknown metric 'exact'; known: .* \(did you mean 'exact_match'\?\)"):
        get_task("gsm8k_math", metric="exact")


def test_built_in_tasks_refuse_user_files(tmp_path):
    with pytest.raises(UserError, match="gsm8k_math is a built-in task with its own data"):
        get_task("gsm8k_math", sft_file=tmp_path / "x.jsonl")


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_custom_task_from_files_holds_out_by_prompt(tmp_path):
    pairs = _write(tmp_path / "pairs.jsonl", [
        {"prompt": f"q{i % 15}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(30)])
    sft = _write(tmp_path / "sft.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(40)])
    task = get_task("support_bot", sft_file=sft, pft_file=pairs)
    assert task.name == "support_bot" and task.metric.name == "preference_accuracy"
    held = {e["prompt"][0]["content"] for e in task.eval_pool}
    assert len(held) == 2 and len(task.eval_pool) == 4  # 2 of 15 prompts, each with both of its pairs
    assert len(task.pref_pool) == 26 and len(task.sft_pool) == 38
    assert held.isdisjoint(e["prompt"][0]["content"] for e in task.sft_pool + task.pref_pool)

    sft_only = get_task("support_bot", sft_file=sft)
    assert sft_only.metric.name == "rouge_l" and len(sft_only.eval_pool) == 4 and sft_only.pref_pool == []
    with pytest.raises(UserError, match="^n_pft=1 but no --pft-file given: a custom task.s preference pairs come from it"):
        select(sft_only, 1, 1, 1, seed=0)
    with pytest.raises(UserError, match="metric preference_accuracy needs preference pairs"):
        get_task("support_bot", sft_file=sft, metric="preference_accuracy")


def test_custom_task_reports_bad_rows_with_file_and_line(tmp_path):
    pairs = _write(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q"}])
    with pytest.raises(UserError, match=r"pairs\.jsonl:2: missing 'chosen'"):
        get_task("mine", pft_file=pairs)


def test_a_custom_task_evaluates_on_the_users_own_file(tmp_path):
    sft = _write(tmp_path / "sft.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(40)])
    held = _write(tmp_path / "eval.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in (3, 7)] +
                  [{"prompt": "new", "completion": "answer"}])
    task = get_task("mine", sft_file=sft, eval_file=held, metric="exact_match")
    assert [e["prompt"][0]["content"] for e in task.eval_pool] == ["q3", "q7", "new"]
    assert len(task.sft_pool) == 38  # a prompt evaluated on is never trained on
    with pytest.raises(UserError, match="built-in task"):
        get_task("gsm8k_math", eval_file=held)
