"""Known-harmless library warnings: filed once in engine.log, never on stderr (the TUI's pane)."""

import logging
import warnings

from engine.record.library_noise import without_known_harmless
from engine.training.report import LibraryLogs

GEMM = "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'"
CHECKPOINTING = "`is_gradient_checkpointing` is deprecated and will be removed in v6."


def test_harmless_warnings_are_filed_once_and_kept_off_stderr(tmp_path, capsys):
    logs = LibraryLogs(also_stderr=True)
    try:
        bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
        bnb.warning(GEMM)  # before the run folder exists: buffered
        logs.to_file(tmp_path / "engine.log")
        bnb.warning(GEMM)
        for _ in range(3):
            warnings.warn_explicit(CHECKPOINTING, FutureWarning, "modeling_utils.py", 3312)
        logging.getLogger("a.library").warning("a warning worth reading")
    finally:
        logs.close()
    filed = (tmp_path / "engine.log").read_text()
    assert filed.count("gemm_4bit_forward") == 1 and filed.count("is_gradient_checkpointing") == 1
    assert "a warning worth reading" in filed
    err = capsys.readouterr().err
    assert "a warning worth reading" in err and "gemm_4bit" not in err and "checkpointing" not in err


def test_a_log_read_back_drops_them_with_their_continuation_lines():
    lines = ["2026 WARNING py.warnings: x.py:1: FutureWarning: " + CHECKPOINTING, "  warnings.warn(", "",
             "2026 WARNING bitsandbytes: " + GEMM, "run r1: tiny, 8 SFT examples", "  an indented line of its own"]
    assert without_known_harmless(lines) == ["run r1: tiny, 8 SFT examples", "  an indented line of its own"]
