"""Kill, corrupt and fill the disk at random points of a tiny run: every trial ends in a finished
run equal to the uninterrupted one, or in one line and a truthful record — never a traceback,
never a store row that disagrees with the run's events. (More trials: bench/fault_injection.py.)"""

import pytest

from bench.fault_injection import FAULTS, reference_run, run_trial


@pytest.mark.slow
def test_faults_at_random_points_end_finished_and_equal_or_in_one_truthful_line(tmp_path):
    home = tmp_path / "home"
    reference = reference_run(home)
    trials = [run_trial(seed, home, reference, reference["events"]) for seed in range(len(FAULTS))]
    assert {t.fault for t in trials} == set(FAULTS)
    for trial in trials:
        assert trial.passed, (trial.fault, trial.point, trial.problems, trial.commands)
