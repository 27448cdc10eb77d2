"""Run ids and user-given paths never leave the runs folder."""

import pytest

from engine.record import home
from engine.record.errors import UserError


@pytest.mark.parametrize("bad", ["../x", "..", "/etc/passwd", "a/b", "a\x00b", "", ".hidden", "a" * 65, "a b"])
def test_bad_run_ids_are_rejected(bad, tmp_path):
    with pytest.raises(UserError):
        home.run_dir(bad, root=tmp_path)


def test_run_dir_lies_in_runs_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BUDGETTUI_HOME", str(tmp_path))
    assert home.run_dir("20260101-abc") == (tmp_path / "runs" / "20260101-abc").resolve()
    assert home.check_run_id(home.new_run_id())


@pytest.mark.parametrize("bad", ["../up", "/abs/path", "a/../../b", "nul\x00byte"])
def test_inside_refuses_escapes(bad, tmp_path):
    with pytest.raises(UserError):
        home.inside(tmp_path, bad)


def test_inside_accepts_nested(tmp_path):
    assert home.inside(tmp_path, "sft/adapter") == (tmp_path / "sft" / "adapter").resolve()


def test_home_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("BUDGETTUI_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert home.home_dir() == tmp_path / "budgettui"
