"""A sweep: every (budget, SFT share) cell of a grid is one ordinary `engine run`, named so a
re-run of the same command finds it. The definition is kept at `<home>/sweeps/NAME.json`, so
`engine sweep show NAME` draws it and the same command continues it after a stop."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.record import home
from engine.record.errors import UserError
from engine.record.model_names import canonical_model, model_folder

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")  # a cell id adds at most 24 characters
SPLIT_SETTINGS = ("task", "model", "n_sft", "n_pft", "budget", "sft_cost", "pft_cost")


@dataclass(frozen=True)
class Cell:
    """One grid cell: what it spends, its SFT share of examples, what that buys, and its run id."""

    budget: float
    share: float
    n_sft: int
    n_pft: int
    run_id: str


@dataclass(frozen=True)
class Sweep:
    name: str
    task: str
    model: str
    budgets: list[float]
    ratios: list[float]
    sft_cost: float
    pft_cost: float
    settings: dict = field(default_factory=dict)  # run settings every cell is run with (`engine run` flags)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples as lists: what the file holds

    @property
    def cells(self) -> list[Cell]:
        """Every cell, budget by budget, shares in the order given; each buys what its money pays for."""
        from advisor.recommend import buy

        cells = []
        for budget in self.budgets:
            for share in self.ratios:
                n_sft, n_pft = buy(share, budget, self.sft_cost, self.pft_cost)
                if n_sft + n_pft == 0:
                    raise UserError(f"a budget of {budget:g} at SFT share {share:g} buys no examples at these prices")
                cells.append(Cell(budget, share, n_sft, n_pft, cell_id(self.name, budget, share)))
        return cells

    def run_flags(self) -> list[str]:
        """The settings as `engine run` flags."""
        flags = []
        for name, value in self.settings.items():
            option = "--" + name.replace("_", "-")
            if value is True:
                flags.append(option)
            elif value is not False and value is not None:
                flags += [option, ",".join(value) if isinstance(value, (list, tuple)) else str(value)]
        return flags

    def command(self, cell: Cell, status: str | None, prefix: list[str]) -> list[str]:
        """The one command that brings `cell` forward: a new run, or the resume of a stopped one."""
        if status is None:
            return [*prefix, "run", "--task", self.task, "--model", self.model, "--n-sft", str(cell.n_sft),
                    "--n-pft", str(cell.n_pft), "--run-id", cell.run_id, *self.run_flags()]
        return [*prefix, "resume", cell.run_id]


def cell_id(name: str, budget: float, share: float) -> str:
    """`NAME-b256-s75`: budget 256, 75% of the examples SFT (a decimal point is written `p`)."""
    return f"{name}-b{budget:g}-s{share * 100:g}".replace(".", "p").replace("+", "")


def default_name(task: str, model: str) -> str:
    folder = model_folder(model)
    named = Path(folder).name if folder else canonical_model(model)  # a folder: its own name, not its path
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{task}-{named}").strip("-_")
    return slug[:40].rstrip("-_") or "sweep"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise UserError(f"invalid sweep name {name!r}: use up to 40 letters, digits, '-' and '_'")
    return name


def path_of(name: str) -> Path:
    """`<home>/sweeps/NAME.json`; a name is checked first, so the path never leaves the home."""
    return home.inside(home.home_dir(), f"sweeps/{check_name(name)}.json")


def check(sweep: Sweep) -> Sweep:
    """A grid every cell of which is a valid, distinct run; one line naming what is wrong."""
    from engine.record.config import build

    check_name(sweep.name)
    for label, values in (("--budgets", sweep.budgets), ("--ratios", sweep.ratios)):
        if not values:
            raise UserError(f"{label} lists nothing")
        if len(set(values)) != len(values):
            raise UserError(f"{label} lists a value twice")
    if any(not 0 <= share <= 1 for share in sweep.ratios):
        raise UserError("--ratios are SFT shares of the examples: each between 0 and 1")
    ids = [cell.run_id for cell in sweep.cells]
    if len(set(ids)) != len(ids):
        raise UserError("two cells of the grid would share a run id: use shares that differ by at least 1%")
    unknown = set(sweep.settings) & set(SPLIT_SETTINGS)
    if unknown:
        raise UserError(f"a sweep sets {', '.join(sorted(unknown))} itself")
    build(None, {**sweep.settings, "task": sweep.task, "model": sweep.model, "n_sft": 1, "n_pft": 1})
    return sweep


def save(sweep: Sweep) -> Path:
    """Write the definition, or accept it unchanged; a different grid under the same name is refused."""
    path = path_of(sweep.name)
    if path.exists():
        if load(sweep.name).to_dict() != sweep.to_dict():
            raise UserError(f"sweep {sweep.name!r} already exists with other settings ({path}): "
                            "run exactly the same command to continue it, or choose another --name")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(sweep.to_dict(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load(name: str) -> Sweep:
    path = path_of(name)
    if not path.is_file():
        raise UserError(f"no sweep named {name!r} (looked for {path})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Sweep(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"cannot read sweep {path}: {exc}") from None
