"""What `--help` tells a user before their first run, and the error when a run is not sized."""

import subprocess
import sys

from engine.cli import build_parser
from tests.runner import ROOT, env_for


def _help(*command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command[0]]
    return " ".join(sub.format_help().split())  # argparse wraps lines; compare words


def test_run_help_says_the_two_ways_to_size_a_run_are_alternatives():
    text = _help("run")
    assert "one of two ways, not both: --n-sft and --n-pft, or --budget, --sft-cost and --pft-cost" in text


def test_run_help_lists_the_metrics_and_a_custom_tasks_default():
    text = _help("run")
    assert "one of exact_match, heldout_loss, preference_accuracy, rouge_l" in text
    assert "a custom task: preference_accuracy with a --pft-file, else rouge_l" in text
    assert "--eval-file" in text


def test_advise_help_lists_the_known_tasks_and_the_runs_file_format():
    text = _help("advise")
    assert "gsm8k_math, helpfulness, instruction_following, summarization_reddit_tldr" in text
    assert "task, model, n_sft, n_pft, score (score in 0-1) and optionally params_b" in text


def test_a_run_given_no_size_names_both_ways(tmp_path):
    result = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--task", "gsm8k_math", "--model", "tiny"],
                            cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == ("engine: error: size the run: give --n-sft and --n-pft, or --budget, --sft-cost and "
                             "--pft-cost (the advisor then picks the split)\n")
    assert not (tmp_path / "runs").exists()
