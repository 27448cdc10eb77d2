"""Shared fixtures: an isolated budgettui home per test, the tiny model built and the demo model
converted once per session."""

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# A test that loads a model without a home of its own still writes the model's 4-bit copy into a home:
# this session's, never the user's.
os.environ["BUDGETTUI_HOME"] = tempfile.mkdtemp(prefix="budgettui-test-session-")
atexit.register(shutil.rmtree, os.environ["BUDGETTUI_HOME"], ignore_errors=True)


def pytest_configure(config):
    """Under `pytest -n N` (`make test`), each worker process — and every process a test starts —
    runs on a core of its own: the workers do not slow each other's timed steps, and a test that
    counts the other work on its cores (`meter.other_work`) sees none from its neighbour."""
    worker, workers = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if worker and len(cores) >= workers > 1:
        os.sched_setaffinity(0, {cores[int(worker.removeprefix("gw")) % len(cores)]})


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh, empty $BUDGETTUI_HOME for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("BUDGETTUI_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_spec():
    """ModelSpec of the tiny Llama, the session's one build (`runner.tiny_home`; its path is absolute)."""
    from engine.training.models import resolve_model
    from runner import tiny_home

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BUDGETTUI_HOME", str(tiny_home()))
        return resolve_model("tiny")


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory):
    """A home whose models/ holds the demo model, converted from its wheel once per session (about
    20 s): a test home links its models/ here."""
    from engine.training.models import resolve_model

    path = tmp_path_factory.mktemp("demo-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BUDGETTUI_HOME", str(path))
        resolve_model("demo")
    return path


@pytest.fixture(scope="session")
def tiny_4bit(tiny_spec):
    """(model, tokenizer): the tiny Llama in real bitsandbytes NF4 on CPU. Read-only: do not train it."""
    import torch

    from engine.training.models import load_model

    torch.set_num_threads(1)
    return load_model(tiny_spec, quant="auto", device="cpu")
