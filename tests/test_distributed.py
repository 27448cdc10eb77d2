"""`engine run --nproc 2` on two CPU processes (torchrun, gloo) against one process with the
same global batch, and the life of a two-process run: one record, a killed rank, a stop, resumes.

How close "the same" can be: SFT losses and grad norms agree within 1e-5 (measured: 1e-6).
DPO's values cannot: they are differences of sequence log-probabilities summed over hundreds of
tokens (about -1000 for the tiny model), whose float32 spacing is 6e-5 to 1.2e-4, and splitting
a batch of 4 into two of 2 pads and sums in another order. So DPO values are held to 8 float32
steps (ulp) of that step's log-probabilities (measured 2026-11-30: loss 0.4 of one, margins 1.0,
rewards and log-probabilities up to 4). Adapters: see ADAPTER_TOLERANCE.
"""

import json
import os
import signal

import numpy as np
import pytest

from engine.training import checkpoints, distributed
from runner import TINY, engine, events, folder, json_out, of_type, start, wait_for_event

# 32 SFT examples and 32 pairs, global batch 8 (2 per process × 2 processes × accumulation 2,
# or 4 × 1 × 2): 8 optimizer steps per stage, a checkpoint every 2
ARGS = [*TINY, "--n-sft", "32", "--n-pft", "32", "--grad-accum", "2", "--checkpoint-every", "2", "--eval-size", "2",
        "--eval-max-new-tokens", "4", "--sft-lr", "5e-3", "--dpo-lr", "5e-4"]
TWO = [*ARGS, "--batch-size", "2", "--nproc", "2"]
ONE = [*ARGS, "--batch-size", "4"]
TOLERANCE = 1e-5
# Saved adapters of the two-process run against one process with the per-device batch doubled:
# the same sums in another order, after 8 Adam steps at SFT lr 5e-3 on the taught tiny model
# (measured 1.25e-5 at most, in one layer-0 lora_A element set by SFT; 4e-7 on the earlier,
# untrained tiny model). Adam divides by the root of the squared gradients, so a gradient near
# zero turns a last-bit difference into a visible one.
ADAPTER_TOLERANCE = 3e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run in two processes and in one, each in its own home."""
    two, one = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("one")
    return {"two": (two, json_out(engine(two, "run", *TWO, "--run-id", "two", "--json"))),
            "one": (one, json_out(engine(one, "run", *ONE, "--run-id", "one", "--json")))}


def _adapter(home, run_id, stage):
    from safetensors.torch import load_file

    return load_file(folder(home, run_id) / stage / "adapter" / "adapter_model.safetensors")


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _logged(evs, key="loss"):
    return {(e["stage"], e["step"]): e[key] for e in evs if e["type"] == "log" and key in e}


DPO_ULPS = 8


def _ulp(value: float) -> float:
    return float(np.spacing(np.float32(abs(value))))


def assert_same_trajectory(evs, reference):
    """SFT within TOLERANCE; DPO within the float32 resolution of its summed log-probabilities:
    splitting a batch changes the padding and the order of a sum over hundreds of tokens, which
    moves the sum by a few float32 steps (ulp) of its size (rounding grows like √n), and a reward
    is β·(policy − reference), two such sums. Measured: at most 4 steps; bound: 8."""
    logs = {(e["stage"], e["step"]): e for e in evs if e["type"] == "log" and "loss" in e}
    refs = {(e["stage"], e["step"]): e for e in reference if e["type"] == "log" and "loss" in e}
    assert logs.keys() == refs.keys() and len(logs) == 16
    for key, log in logs.items():
        ref = refs[key]
        if key[0] == "sft":
            assert abs(log["loss"] - ref["loss"]) <= TOLERANCE, key
            assert abs(log["grad_norm"] - ref["grad_norm"]) <= TOLERANCE, key
            continue
        ulp = _ulp(max(abs(ref["logps/chosen"]), abs(ref["logps/rejected"])))
        for name in ("loss", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
            assert abs(log[name] - ref[name]) <= DPO_ULPS * ulp, (key, name, log[name] - ref[name], ulp)


@pytest.mark.slow
def test_every_rank_is_one_of_two_gloo_processes(runs):
    home, out = runs["two"]
    assert out["status"] == "finished"
    records = distributed.read_records(folder(home, "two"))
    assert sorted(records) == [0, 1]
    assert {(r["world_size"], r["backend"], r["status"]) for r in records.values()} == {(2, "gloo", "finished")}
    assert records[0]["pid"] != records[1]["pid"]
    evs = events(home, "two")
    assert [e["world_size"] for e in of_type(evs, "stage_started")] == [2, 2]
    assert [e["world_size"] for e in of_type(events(runs["one"][0], "one"), "stage_started")] == [1, 1]


@pytest.mark.slow
def test_losses_and_adapters_equal_one_process_with_the_same_global_batch(runs):
    (two, _), (one, _) = runs["two"], runs["one"]
    two_evs, one_evs = events(two, "two"), events(one, "one")
    assert_same_trajectory(two_evs, one_evs)
    assert [k for k in _logged(two_evs) if k[0] == "sft"] == [("sft", step) for step in range(1, 9)]
    for stage in ("sft", "dpo"):
        assert _max_diff(_adapter(two, "two", stage), _adapter(one, "one", stage)) <= ADAPTER_TOLERANCE
    assert _max_diff(_adapter(two, "two", "dpo"), _adapter(two, "two", "sft")) > 100 * TOLERANCE  # DPO moved them


@pytest.mark.slow
def test_first_dpo_step_has_zero_margin(runs):
    home, _ = runs["two"]
    first = [e for e in of_type(events(home, "two"), "log", stage="dpo") if "loss" in e][0]
    assert first["step"] == 1 and first["rewards/margins"] == first["rewards/chosen"] == 0.0


@pytest.mark.slow
def test_one_run_one_record(runs):
    home, out = runs["two"]
    rows = json_out(engine(home, "runs", "list", "--json"))
    assert [row["run_id"] for row in rows] == ["two"] and rows[0]["status"] == "finished"
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("events*.jsonl")) == ["runs/two/events.jsonl"]
    evs = events(home, "two")
    assert [e["type"] for e in evs].count("run_started") == 1 and evs[-1]["type"] == "run_finished"
    assert [e["stage"] for e in of_type(evs, "eval")] == ["base", "sft", "dpo"]  # evaluated once, not per rank
    assert len(of_type(evs, "log", stage="sft", step=1)) == 1  # one log per step, not one per rank
    assert out["results"] == json.loads((folder(home, "two") / "results.json").read_text())


@pytest.mark.slow
def test_killed_rank_then_stop_then_resume_ends_like_an_uninterrupted_run(runs, tmp_path):
    home, run_id = tmp_path, "hurt"
    run = folder(home, run_id)

    # kill -9 one rank mid-SFT: the run is interrupted, not left "running"
    proc = start(home, "run", *TWO, "--run-id", run_id)
    wait_for_event(home, run_id, proc, lambda e: e["type"] == "checkpoint" and e["stage"] == "sft")
    os.kill(distributed.read_records(run)[1]["pid"], signal.SIGKILL)
    assert proc.wait(timeout=300) == 1
    assert not of_type(events(home, run_id), "stage_finished", stage="sft"), "the kill came after SFT ended"
    shown = json_out(engine(home, "runs", "show", run_id, "--json"))
    assert shown["status"] == "interrupted" and "rank 1 died" in shown["error"]
    assert [e for e in of_type(events(home, run_id), "error") if e["kind"] == "interrupted"]

    # resume with the recorded two processes; SIGINT (the TUI's stop) once DPO is under way
    resumed = start(home, "resume", run_id)
    wait_for_event(home, run_id, resumed, lambda e: e["type"] == "log" and e["stage"] == "dpo")
    os.killpg(resumed.pid, signal.SIGINT)
    assert resumed.wait(timeout=300) == 130
    records = distributed.read_records(run)
    assert {(r["world_size"], r["status"]) for r in records.values()} == {(2, "stopped")} and len(records) == 2
    stopped = json_out(engine(home, "runs", "show", run_id, "--json"))["status"]
    assert stopped == "stopped"
    latest = checkpoints.latest_complete(run / "dpo" / "checkpoints")
    dpo_steps = [e["step"] for e in of_type(events(home, run_id), "log", stage="dpo") if "loss" in e]
    assert latest is not None and checkpoints.trainer_position(latest)[0] == max(dpo_steps) < 8  # all stopped there

    out = json_out(engine(home, "resume", run_id, "--json"))
    whole_home, whole = runs["two"]
    assert out["status"] == "finished" and out["results"] == whole["results"]
    assert [(e["stage"], e["step"]) for e in of_type(events(home, run_id), "resumed")][0][0] == "sft"
    for stage in ("sft", "dpo"):
        assert _max_diff(_adapter(home, run_id, stage), _adapter(whole_home, "two", stage)) <= TOLERANCE
    # later launches re-log the steps after the checkpoint they resumed from: keep each step's last log
    last = {(e["stage"], e["step"]): e for e in events(home, run_id) if e["type"] == "log" and "loss" in e}
    assert_same_trajectory(list(last.values()), events(whole_home, "two"))


def test_the_launch_command_is_torchrun_or_the_users_accelerate_config(tmp_path):
    from engine.record.config import RunConfig

    torchrun = distributed.command(RunConfig(task="t", model="m", nproc=3), "r1", events_stdout=True, human=False)
    assert torchrun[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3",
                            "-m", "engine.training.worker", "r1", "--events-stdout"]
    accelerate = distributed.command(RunConfig(task="t", model="m", nproc=2, accelerate_config="/x/fsdp.yaml"), "r2",
                                     events_stdout=False, human=True)
    assert accelerate[1:] == ["-m", "accelerate.commands.launch", "--config_file", "/x/fsdp.yaml",
                              "--num_processes", "2", "-m", "engine.training.worker", "r2", "--human"]


@pytest.mark.parametrize("flags, message", [
    (["--nproc", "0"], "nproc must be at least 1"),
    (["--nproc", "2", "--accelerate-config", "missing.yaml"], "--accelerate-config: no such file"),
])
def test_bad_process_settings_are_one_line_and_create_nothing(tmp_path, flags, message):
    result = engine(tmp_path, "run", *TINY, "--n-sft", "4", "--n-pft", "4", *flags)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


ACCELERATE_CPU = """compute_environment: LOCAL_MACHINE
distributed_type: MULTI_CPU
num_machines: 1
num_processes: 2
machine_rank: 0
mixed_precision: 'no'
use_cpu: true
"""


@pytest.mark.slow
def test_accelerate_cpu_launching_one_process_is_an_error_not_a_lone_run(tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts one process without MPI: said, not trained."""
    config = tmp_path / "cpu.yaml"
    config.write_text(ACCELERATE_CPU)
    result = engine(tmp_path, "run", *TINY, "--n-sft", "4", "--n-pft", "4", "--nproc", "2",
                    "--accelerate-config", str(config), "--run-id", "alone", "--json")
    assert result.returncode == 2
    out = json.loads(result.stdout)
    assert out["status"] == "failed" and "started a world of 1" in out["error"]
    records = distributed.read_records(folder(tmp_path, "alone"))
    assert list(records) == [0] and records[0]["world_size"] == 1
    assert json_out(engine(tmp_path, "runs", "show", "alone", "--json"))["status"] == "failed"
