"""`engine runs list` through a pipe: every run id whole, and a count a person would write."""

from engine.record.store import RunStore
from runner import engine

LONG_ID = "a-run-named-at-length-so-that-it-would-not-fit-20261130"


def _add(run_id: str, model: str = "some-organisation/a-model-with-a-long-name") -> None:
    RunStore().create_run(run_id, task="gsm8k_math", model=model, params_b=0.1, n_sft=10, n_pft=10,
                          config={}, run_dir="/nowhere", pid=1)


def test_piped_list_keeps_ids_and_every_column_whole(home):
    _add(LONG_ID)
    out = engine(home, "runs", "list")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].strip() == "1 run"
    row = next(line for line in out.stdout.splitlines() if LONG_ID in line)
    assert "some-organisation/a-model-with-a-long-name" in row and "gsm8k_math" in row


def test_two_runs_are_counted_in_the_plural(home):
    _add("first-run")
    _add("second-run", model="tiny")
    out = engine(home, "runs", "list")
    assert out.stdout.splitlines()[0].strip() == "2 runs"


def test_a_model_name_with_brackets_is_listed_and_shown_as_typed(home):
    _add("bracketed", model="org/[/x]-8B")  # was read as rich markup: a traceback
    for command in (["runs", "list"], ["runs", "show", "bracketed"]):
        out = engine(home, *command)
        assert out.returncode == 0 and "org/[/x]-8B" in out.stdout, out.stderr
