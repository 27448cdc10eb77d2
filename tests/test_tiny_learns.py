"""The `tiny` model is taught a toy task when it is built, so generated metrics are not all 0
and a fine-tune on that task moves its score — end to end, through `engine run`."""

import json
import random

import pytest

from engine.training.models import tiny_lesson
from tests.runner import engine, json_out


def _lessons(path, seed: int, n: int):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        user, assistant = tiny_lesson(rng)
        rows.append({"prompt": user["content"], "completion": assistant["content"]})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.slow
def test_tiny_answers_its_lesson_and_sft_on_it_moves_the_score(tmp_path):
    sft = _lessons(tmp_path / "repeat.jsonl", seed=1, n=200)
    out = json_out(engine(tmp_path, "run", "--task", "repeat", "--model", "tiny", "--sft-file", str(sft),
                          "--metric", "rouge_l", "--n-sft", "128", "--n-pft", "0", "--sft-lr", "1e-2",
                          "--epochs", "2", "--eval-size", "20", "--eval-max-new-tokens", "8", "--json"))
    scores = out["results"]["scores"]
    assert scores["base"] > 0.2 and scores["sft"] > 0.2  # a random model writes newlines and scores 0
    assert abs(scores["sft"] - scores["base"]) > 0.01  # measured here: 0.368 → 0.386
    rows = [json.loads(line) for line in (tmp_path / "runs" / out["run_id"] / "evals" / "base.jsonl").open()]
    assert all(row["output"].strip() for row in rows)  # it answers
