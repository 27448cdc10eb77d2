"""Crash and resume: only complete checkpoints count, and a run killed with SIGKILL in SFT or in
DPO, then resumed, ends where an uninterrupted run with the same seed ends."""

import os
import shutil
import signal

import pytest

from engine.training import checkpoints
from engine.record.events import read_events
from runner import TINY, engine, events, folder, json_out, of_type, start, wait_for_event

# 32 examples, batch 2 × accumulation 2: 16 optimizer steps per stage, a checkpoint every 2
ARGS = [*TINY, "--n-sft", "32", "--n-pft", "32", "--batch-size", "2", "--grad-accum", "2", "--checkpoint-every", "2",
        "--eval-size", "4", "--sft-lr", "5e-3", "--dpo-lr", "5e-3"]
TOLERANCE = 1e-3
TORN = '{"v": 1, "type": "log", "run_id": "cut'


def _checkpoint(path, step, files=("adapter_model.safetensors", "optimizer.pt")):
    folder_ = path / f"checkpoint-{step}"
    folder_.mkdir(parents=True)
    for name in files:
        (folder_ / name).write_bytes(os.urandom(64))
    return folder_


def test_only_marked_checkpoints_with_intact_files_count(tmp_path):
    first, second, third = (_checkpoint(tmp_path, step) for step in (2, 4, 6))
    checkpoints.mark_complete(first)
    checkpoints.mark_complete(second)
    assert checkpoints.latest_complete(tmp_path) == second  # checkpoint-6 was never marked
    (second / "optimizer.pt").write_bytes(b"cut")  # a file changed after marking
    assert not checkpoints.is_complete(second)
    assert checkpoints.latest_complete(tmp_path) == first
    assert checkpoints.latest_complete(tmp_path / "missing") is None


def test_prune_keeps_the_newest_complete_and_drops_the_torn(tmp_path):
    made = [_checkpoint(tmp_path, step) for step in (2, 4, 6, 8)]
    for path in made[:3]:
        checkpoints.mark_complete(path)
    removed = checkpoints.prune(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == ["checkpoint-2", "checkpoint-8"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    home = tmp_path_factory.mktemp("whole")
    json_out(engine(home, "run", *ARGS, "--run-id", "whole", "--json"))
    return home


def _adapter(home, run_id, stage):
    from safetensors.torch import load_file

    return load_file(folder(home, run_id) / stage / "adapter" / "adapter_model.safetensors")


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _losses(evs):
    return {(e["stage"], e["step"]): e["loss"] for e in evs if e["type"] == "log" and "loss" in e}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(uninterrupted, tmp_path, stage):
    home, run_id = tmp_path, f"killed-{stage}"
    proc = start(home, "run", *ARGS, "--run-id", run_id)
    wait_for_event(home, run_id, proc, lambda e: e["type"] == "checkpoint" and e["stage"] == stage and e["step"] >= 4)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = folder(home, run_id)
    killed = events(home, run_id)
    assert not of_type(killed, "stage_finished", stage=stage), "the kill came after the stage ended"
    assert json_out(engine(home, "runs", "show", run_id, "--json"))["status"] == "interrupted"

    # what a kill can leave behind: a torn last event line, a half-written newer checkpoint
    with open(run / "events.jsonl", "a") as handle:
        handle.write(TORN)
    good = checkpoints.latest_complete(run / stage / "checkpoints")
    step = checkpoints.trainer_position(good)[0]
    torn = good.with_name(f"checkpoint-{step + 1}")
    shutil.copytree(good, torn)
    (torn / checkpoints.MARKER).unlink()

    out = json_out(engine(home, "resume", run_id, "--json"))
    assert out["status"] == "finished"
    assert out["results"] == json_out(engine(uninterrupted, "runs", "show", "whole", "--json"))["results"]

    lines = (run / "events.jsonl").read_text().splitlines()
    assert TORN in lines  # the torn line was closed, not glued to the next event
    resumed_evs = read_events(run / "events.jsonl")
    assert len(resumed_evs) == len(lines) - 1  # readers skip exactly the torn line
    resumed = of_type(resumed_evs, "resumed")
    assert [(e["stage"], e["step"]) for e in resumed] == [(stage, step)]
    after = resumed_evs[resumed_evs.index(resumed[0]) + 1:]
    assert of_type(after, "stage_started", stage=stage)[0]["step"] == step
    assert after[-1]["type"] == "run_finished" and after[-1]["status"] == "finished"

    whole_losses, resumed_losses = _losses(events(uninterrupted, "whole")), _losses(resumed_evs)
    assert resumed_losses.keys() == whole_losses.keys()
    assert max(abs(whole_losses[k] - resumed_losses[k]) for k in whole_losses) <= TOLERANCE
    for name in ("sft", "dpo"):
        assert _max_diff(_adapter(home, run_id, name), _adapter(uninterrupted, "whole", name)) <= TOLERANCE
    moved = _max_diff(_adapter(uninterrupted, "whole", "dpo"), _adapter(uninterrupted, "whole", "sft"))
    assert moved > 10 * TOLERANCE  # DPO really changed the weights the comparison is about
    assert not torn.exists() or checkpoints.is_complete(torn)  # dropped, or rewritten whole later
