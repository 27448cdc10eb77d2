"""What a run looks like so far, folded from its events (schema v1, `engine.record.events`).

One fold serves the live run (events from the child's stdout), a re-attached run and a past run
(events from its file), so every view of a run is drawn from the same state."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.record.compute import FORECAST_STAGES

REWARD_KEYS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")


def _whole(value, fallback: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else fallback


@dataclass
class StageProgress:
    """One training stage: its size, where it is and the curves it has drawn."""

    total_steps: int = 0
    n_examples: int = 0
    step: int = 0
    started_at: float | None = None
    first_step: int = 0  # the step it (re)started from: a resumed stage's pace counts from there
    loss: list[tuple[int, float]] = field(default_factory=list)
    rewards: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


@dataclass
class RunState:
    """Everything the run screen shows, updated one event at a time by `apply`."""

    run_id: str = ""
    config: dict = field(default_factory=dict)
    pid: int | None = None
    params_b: float | None = None
    world_size: int = 1  # training processes: the config's nproc, then what each stage reports
    stage: str | None = None
    stages: dict[str, StageProgress] = field(default_factory=dict)
    evals: dict[str, tuple[str, float, int]] = field(default_factory=dict)
    messages: list[tuple[str, str]] = field(default_factory=list)
    status: str = "waiting"
    started_at: float | None = None
    ended_at: float | None = None
    last_time: float | None = None
    n_events: int = 0
    n_logs: int = 0
    forecast: dict[str, float] = field(default_factory=dict)  # seconds per stage, forecast at launch
    begun: dict[str, float] = field(default_factory=dict)  # when each stage began
    done: set[str] = field(default_factory=set)  # stages that have ended

    def apply(self, event: dict) -> None:
        kind, now = event.get("type"), event.get("time")
        self.n_events += 1
        if isinstance(now, (int, float)):
            self.last_time = now
            if self.started_at is None:
                self.started_at = now
        self.run_id = self.run_id or str(event.get("run_id", ""))
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event)

    def apply_all(self, events: list[dict]) -> "RunState":
        for event in events:
            self.apply(event)
        return self

    # --- one method per event type --------------------------------------------------------
    def _progress(self, event: dict) -> StageProgress:
        return self.stages.setdefault(str(event.get("stage")), StageProgress())

    def _on_run_started(self, event: dict) -> None:
        self.config = event.get("config") or {}
        self.pid = event.get("pid")
        self.params_b = event.get("params_b")
        self.world_size = _whole(self.config.get("nproc"), self.world_size)
        self.status = "running"
        stages = (event.get("forecast") or {}).get("stages")
        if isinstance(stages, dict):
            self.forecast = {stage: float(figure["seconds"]) for stage, figure in stages.items()
                             if stage in FORECAST_STAGES and isinstance(figure, dict)
                             and isinstance(figure.get("seconds"), (int, float))}
        self.begun.setdefault("base_eval", event.get("time"))

    def _on_stage_started(self, event: dict) -> None:
        progress = self._progress(event)
        progress.total_steps = int(event.get("total_steps") or 0)
        progress.n_examples = int(event.get("n_examples") or 0)
        progress.started_at = event.get("time")
        progress.first_step = progress.step = max(progress.step, int(event.get("step") or 0))
        self.world_size = _whole(event.get("world_size"), self.world_size)
        self.stage = event.get("stage")
        self.status = "running"
        self.begun[str(self.stage)] = progress.started_at

    def _on_resumed(self, event: dict) -> None:
        self._progress(event).step = int(event.get("step") or 0)
        self.stage = event.get("stage")
        self.status = "running"
        if self.stage in FORECAST_STAGES:  # what came before the stage it continues has ended
            self.done.update(FORECAST_STAGES[:FORECAST_STAGES.index(self.stage)])

    def _on_log(self, event: dict) -> None:
        progress = self._progress(event)
        step = int(event.get("step") or 0)
        progress.step = max(progress.step, step)
        self.n_logs += 1
        loss = event.get("loss")
        if isinstance(loss, (int, float)):
            progress.loss.append((step, float(loss)))
        for key in REWARD_KEYS:
            value = event.get(key)
            if isinstance(value, (int, float)):
                progress.rewards.setdefault(key, []).append((step, float(value)))

    def _on_eval(self, event: dict) -> None:
        self.evals[str(event.get("stage"))] = (str(event.get("metric")), float(event["value"]), int(event.get("n") or 0))
        self.done.add(f"{event.get('stage')}_eval")

    def _on_stage_finished(self, event: dict) -> None:
        progress = self._progress(event)
        progress.step = max(progress.step, int(event.get("step") or 0))
        self.done.add(str(event.get("stage")))
        self.begun[f"{event.get('stage')}_eval"] = event.get("time")

    def _on_warning(self, event: dict) -> None:
        self.messages.append(("warning", str(event.get("message", ""))))

    def _on_error(self, event: dict) -> None:
        self.messages.append(("error", f"{event.get('kind', 'error')}: {event.get('message', '')}"))

    def _on_run_finished(self, event: dict) -> None:
        self.status = str(event.get("status") or "finished")
        self.ended_at = event.get("time")

    # --- what the screen asks -------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.ended_at is not None or self.status in ("failed", "stopped", "finished", "interrupted")

    def fail(self, reason: str) -> None:
        """The run ended without saying so (the child died): record why, ending it at its last event."""
        self.messages.append(("error", reason))
        self.status = "failed"
        self.ended_at = self.last_time

    def elapsed(self, now: float) -> float:
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - self.started_at)

    def eta(self, now: float) -> float | None:
        """Seconds left in the run: the current training stage's from its pace so far, an
        evaluation's (or a stage's before its first step) from the launch's forecast less the
        time it has run, and the forecast of every stage after it. Without a forecast, the
        current training stage's alone; None until something says."""
        if self.finished:
            return None
        todo = [stage for stage in FORECAST_STAGES if stage in self.forecast and stage not in self.done]
        current = todo[0] if todo else self.stage
        left = self._pace_left(current, now)
        if left is None and current in self.forecast:
            begun = self.begun.get(current)
            left = max(0.0, self.forecast[current] - (now - begun if begun is not None else 0.0))
        if left is None:
            return None
        return left + sum(self.forecast[stage] for stage in todo[1:])

    def _pace_left(self, stage: str | None, now: float) -> float | None:
        """Seconds left in a training stage under way: its steps to go at its pace so far, counted
        down from its last event."""
        progress = self.stages.get(stage or "")
        if stage != self.stage or progress is None or not progress.total_steps or progress.started_at is None \
                or progress.step <= progress.first_step or self.last_time is None:
            return None
        rate = (self.last_time - progress.started_at) / (progress.step - progress.first_step)
        return max(0.0, rate * (progress.total_steps - progress.step) - max(0.0, now - self.last_time))

    @property
    def final_stage(self) -> str:
        """The stage whose evaluation is the run's score: DPO, unless the run buys no preference pairs."""
        split = self.split
        return "sft" if split is not None and split[1] == 0 else "dpo"

    @property
    def split(self) -> tuple[int, int] | None:
        """(n_sft, n_pft) from the run's config, when it says."""
        try:
            return int(self.config["n_sft"]), int(self.config["n_pft"])
        except (KeyError, TypeError, ValueError):
            return None
