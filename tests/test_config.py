"""The run configuration: paper defaults, TOML file, flags over file, and one-line errors."""

import json

import pytest

from engine.record import config
from engine.cli import main
from engine.record.errors import UserError

SPLIT = {"task": "gsm8k_math", "model": "tiny", "n_sft": 8, "n_pft": 4}


def test_defaults_follow_the_papers_released_code(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    c = config.build(None, SPLIT)
    assert (c.lora_r, c.lora_alpha, c.lora_dropout) == (32, 32, 0.0)
    assert set(c.lora_targets) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (c.sft_lr, c.dpo_lr, c.lr_scheduler, c.warmup_ratio) == (5e-5, 5e-6, "cosine", 0.1)
    assert (c.epochs, c.beta, c.max_length, c.batch_size * c.grad_accum) == (2.0, 1.0, 1024, 16)
    assert (c.quant, c.trust_remote_code, c.threads, c.max_steps) == ("auto", False, None, None)


def test_file_then_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "gsm8k_math"\nmodel = "tiny"\nn_sft = 100\nn_pft = 50\nlora_r = 8\n'
                    'lora_targets = ["q_proj", "v_proj"]\nbeta = 0.1\n')
    c = config.build(str(path), {"lora_r": 16, "seed": 7, "n_pft": None})
    assert (c.n_sft, c.n_pft, c.lora_r, c.seed, c.beta) == (100, 50, 16, 7, 0.1)
    assert c.lora_targets == ("q_proj", "v_proj")


def test_unknown_key_names_file_line_and_a_close_match(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "gsm8k_math"\n\nlora_rank = 8\n')
    with pytest.raises(UserError, match=r"run\.toml line 3: unknown key 'lora_rank' \(did you mean 'lora_r'\?\)"):
        config.build(str(path), {})


def test_bad_values_name_the_key_and_where_it_came_from(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "gsm8k_math"\nmodel = "tiny"\nn_sft = "ten"\nn_pft = 1\n')
    with pytest.raises(UserError, match=r"run\.toml line 3: n_sft must be a whole number, got 'ten'"):
        config.build(str(path), {})
    with pytest.raises(UserError, match=r"--sft-lr: sft_lr must be greater than 0"):
        config.build(None, {**SPLIT, "sft_lr": 0.0})
    with pytest.raises(UserError, match=r"--quant: quant must be one of auto, 4bit, none, got '4bits' "
                                        r"\(did you mean '4bit'\?\)"):
        config.build(None, {**SPLIT, "quant": "4bits"})
    with pytest.raises(UserError, match="invalid TOML"):
        path.write_text("task = \n")
        config.build(str(path), {})


def test_exactly_one_way_to_size_the_run(tmp_path):
    with pytest.raises(UserError, match="not both"):
        config.build(None, {**SPLIT, "budget": 100.0})
    with pytest.raises(UserError, match="missing --pft-cost"):
        config.build(None, {"task": "t", "model": "m", "budget": 100.0, "sft_cost": 1.0})
    with pytest.raises(UserError, match="size the run: give --n-sft and --n-pft, or --budget, --sft-cost and --pft-cost"):
        config.build(None, {"task": "t", "model": "m"})
    with pytest.raises(UserError, match="nothing to train"):
        config.build(None, {**SPLIT, "n_sft": 0, "n_pft": 0})
    path = tmp_path / "run.toml"
    path.write_text('task = "gsm8k_math"\nmodel = "tiny"\nn_sft = 10\nn_pft = 10\n')
    c = config.build(str(path), {"budget": 50.0, "sft_cost": 1.0, "pft_cost": 2.0})
    assert (c.n_sft, c.n_pft, c.budget) == (None, None, 50.0)  # the flags' form replaces the file's


def test_threads_default_to_omp_and_round_trip(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    c = config.build(None, SPLIT)
    assert c.threads == 3
    assert config.from_dict(json.loads(json.dumps(c.to_dict())), "config.json") == c
    with pytest.raises(UserError, match="config.json: n_sft and n_pft must be set"):
        config.from_dict({**c.to_dict(), "n_sft": None}, "config.json")


def test_cli_errors_are_one_line_and_create_nothing(home, tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('task = "gsm8k_math"\nmodel = "tiny"\nn_sft = 1\nn_pft = 1\nbetta = 0.1\n')
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"engine: error: {path} line 5: unknown key 'betta' (did you mean 'beta'?)"
    assert main(["run", "--task", "gsm8k_math", "--model", "tiny", "--n-sft", "1", "--n-pft", "1",
                 "--run-id", "../x"]) == 2
    assert capsys.readouterr().err.strip().startswith("engine: error: invalid run id '../x'")
    assert main(["run", "--task", "gsm8k_maths", "--model", "tiny", "--n-sft", "1", "--n-pft", "1"]) == 2
    assert "did you mean 'gsm8k_math'" in capsys.readouterr().err
    assert main(["resume", "nope"]) == 2
    assert capsys.readouterr().err.strip() == "engine: error: no run with id 'nope' (see `engine runs list`)"
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def test_flag_types_are_checked_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--task", "t", "--model", "m", "--n-sft", "many"])
    assert exit_.value.code == 2
    assert "argument --n-sft: must be a number, got 'many'" in capsys.readouterr().err
