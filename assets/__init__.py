"""Files shipped with budgettui: the paper's past runs, demo data sets and the app's stylesheet."""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
DATA_DIR = ASSETS_DIR / "data"
PAPER_RUNS = DATA_DIR / "paper_runs_digitized.csv"

