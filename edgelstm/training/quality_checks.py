"""Is a trained model worth deploying? Its test metric against its task's baselines.

``train`` compares every model with the baselines :mod:`edgelstm.training.baselines` computes on the
same test split. This module turns that comparison into what a user reads: the failed
``--min-accuracy`` / ``--require-baseline`` checks (one error line), and a warning block for a
model that is not clearly better than chance, naming the likely causes with this run's
numbers and the flags to try.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgelstm.config import ModelConfig, TrainConfig
from edgelstm.errors import CheckFailedError, InvalidInputError
from edgelstm.tasks import PreparedData, metric_label
from edgelstm.training.architecture import DataFacts
from edgelstm.training.baselines import BaselineComparison

__all__ = [
    "QualityChecks",
    "RunFacts",
    "baseline_summary",
    "chance_warnings",
    "short_advice",
]


@dataclass(frozen=True)
class QualityChecks:
    """What a trained model must show before :func:`edgelstm.training.trainer.train` writes it.

    Every model's headline test metric is compared with its task's baselines on the same
    split (classify: majority class, 1-NN ED, and 1-NN DTW within ``dtw_budget_s`` seconds, 0
    skipping it; anomaly: AUROC 0.5; forecast: seasonal naive); a model not clearly better
    than chance comes with a warning. ``min_accuracy`` (classify: accuracy; anomaly: AUROC)
    and ``require_baseline`` (beat chance and every baseline computed) turn that into
    :class:`~edgelstm.errors.CheckFailedError`, raised before anything is written.
    """

    min_accuracy: float | None
    require_baseline: bool
    dtw_budget_s: float

    @property
    def can_fail(self) -> bool:
        """Whether a check can fail the run (the comparison and warning always happen)."""
        return self.min_accuracy is not None or self.require_baseline

    def refuse_impossible(self, task: str) -> None:
        """Refuse impossible baseline options before any data is read."""
        if self.min_accuracy is not None:
            if task == "forecast":
                raise InvalidInputError(
                    "--min-accuracy applies to classify (test accuracy), anomaly (test AUROC) "
                    "and tag (frame macro F1); a forecast is scored by its MAE: use "
                    "--require-baseline to require beating the seasonal-naive forecast"
                )
            if task == "transcribe":
                raise InvalidInputError(
                    "--min-accuracy applies to classify, anomaly and tag; a transcriber is "
                    "scored by its error rate (lower is better): use --require-baseline to "
                    "require beating the most frequent training text"
                )
            if not 0.0 <= self.min_accuracy <= 1.0:
                raise InvalidInputError(
                    f"--min-accuracy is a fraction in [0, 1], got {self.min_accuracy}"
                )
        if not self.dtw_budget_s >= 0:
            raise InvalidInputError(f"--dtw-budget is seconds >= 0, got {self.dtw_budget_s}")

    def refuse_unlabelled_anomalies(self, prepared: PreparedData) -> None:
        """Refuse an anomaly check on test data that cannot give an AUROC, before training."""
        if prepared.task != "anomaly" or not self.can_fail:
            return
        labels = None if prepared.test.y is None else prepared.test.y[prepared.test_start :]
        if labels is None or not labels.any() or labels.all():
            option = "--min-accuracy" if self.min_accuracy is not None else "--require-baseline"
            raise InvalidInputError(
                f"{option} checks the test AUROC, but the anomaly test data has no labels "
                "marking both normal and anomalous steps; give labelled test data (an "
                f"is_anomaly column) or drop {option}"
            )

    def failures(self, comparison: BaselineComparison) -> list[str]:
        """One phrase per failed ``--min-accuracy`` / ``--require-baseline`` check."""
        failures: list[str] = []
        name = _metric_name(comparison)
        model = _value(comparison, comparison.model)
        minimum = self.min_accuracy
        if minimum is not None and (comparison.model is None or comparison.model < minimum - 1e-12):
            failures.append(f"{name} {model} is below --min-accuracy {minimum:g}")
        if self.require_baseline:
            best_name, best_value = comparison.best()
            if not comparison.clears_chance:
                failures.append(
                    f"{name} {model} is not clearly better than "
                    f"{_TRIVIAL_NAMES.get(comparison.trivial, comparison.trivial)} "
                    f"({_required(comparison)}; --require-baseline)"
                )
            elif not comparison.beats(best_value):
                failures.append(
                    f"{name} {model} is worse than the strongest baseline, {best_name} "
                    f"{_value(comparison, best_value)} (--require-baseline)"
                )
        return failures

    def enforce(
        self, comparison: BaselineComparison, facts: RunFacts, out: Path
    ) -> tuple[str, ...]:
        """Raise :class:`CheckFailedError` for a failed check (naming the baselines and what
        to try), else return the :func:`chance_warnings` for the run's ``warning:`` lines."""
        failures = self.failures(comparison)
        if failures:
            raise CheckFailedError(
                f"{'; '.join(failures)} (baselines on the same test split: "
                f"{baseline_summary(comparison)}); nothing was written to {out}. "
                f"Try {short_advice(facts)}"
            )
        return chance_warnings(comparison, facts)


@dataclass(frozen=True)
class RunFacts:
    """What the advice for a weak model is built from."""

    data: DataFacts
    parameters: int
    config: TrainConfig
    model: ModelConfig
    epochs_run: int
    best_epoch: int
    season: int


#: How the trivial baselines read in a sentence.
_TRIVIAL_NAMES = {
    "majority": "the majority class",
    "random scores": "random scores",
    "seasonal naive": "the seasonal naive forecast",
    "most frequent text": "the most frequent training text",
    "majority frame": "the majority class per frame",
}


def _metric_name(comparison: BaselineComparison) -> str:
    return f"test {metric_label(comparison.metric)}"


def _value(comparison: BaselineComparison, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if comparison.higher_is_better else f"{value:.4g}"


def baseline_summary(comparison: BaselineComparison) -> str:
    """``majority 0.4930, 1-NN ED 0.9130, 1-NN DTW skipped``."""
    parts = []
    for name, value in comparison.values.items():
        parts.append(f"{name} {'skipped' if value is None else _value(comparison, value)}")
    return ", ".join(parts)


def _required(comparison: BaselineComparison) -> str:
    trivial = _value(comparison, comparison.values[comparison.trivial])
    if comparison.higher_is_better:
        return f"{trivial}; {_value(comparison, comparison.required)} needed"
    return f"{trivial}; the model must be below it"


def short_advice(facts: RunFacts) -> str:
    """The concrete flags of :func:`_advice` in one phrase, for a one-line error."""
    flags = [flag for _, flag in _advice(facts)]
    return ", ".join(flags[:-1]) + f" or {flags[-1]}; or drop the check to keep the model anyway"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _advice(facts: RunFacts) -> list[tuple[str, str]]:
    """(likely cause with this run's numbers, what to try) for a model at chance level."""
    config, model = facts.config, facts.model
    size = f"--hidden {model.hidden_size} --layers {model.num_layers}"
    examples = _plural(facts.data.examples, "training example")
    if facts.parameters > 20 * facts.data.examples:
        advice = [
            (
                f"{examples} for {facts.parameters:,} parameters ({size}): too few to learn "
                "that many weights from",
                f"--hidden {max(8, model.hidden_size // 4)} --layers 1",
            )
        ]
    else:
        advice = [
            (
                f"{examples} and a model of {facts.parameters:,} parameters ({size})",
                f"--hidden {2 * model.hidden_size}",
            )
        ]
    data = facts.data
    if data.task == "classify" and data.median_length > 100:
        fix = "--pooling mean" if model.pooling == "last" else "--arch gru"
        advice.append(
            (
                f"long sequences ({data.median_length} steps, "
                f"{_plural(data.channels, 'channel')}): an LSTM carries little from early "
                "steps to the last one",
                fix,
            )
        )
    if facts.data.task in ("forecast", "anomaly"):
        advice.append(
            (
                f"windows of {config.lookback} steps may be too short to see the pattern",
                f"--lookback {2 * config.lookback}",
            )
        )
    if facts.data.task == "forecast" and facts.season == 1:
        advice.append(("the baseline repeats the last value (--season 1)", "--season (the period)"))
    advice.append(
        (
            f"{_plural(facts.epochs_run, 'epoch')} (best validation score at epoch "
            f"{facts.best_epoch}, --epochs {config.epochs})",
            f"--epochs {2 * config.epochs}",
        )
    )
    advice.append(
        (f"learning rate {config.learning_rate:g}", f"--lr {config.learning_rate / 3:.1g}")
    )
    return advice


def chance_warnings(comparison: BaselineComparison, facts: RunFacts) -> tuple[str, ...]:
    """One ``warning:`` block when the model is not clearly better than the trivial rule."""
    if comparison.clears_chance is not False:
        return ()
    name = _metric_name(comparison)
    model = _value(comparison, comparison.model)
    if comparison.higher_is_better:
        head = (
            f"{name} {model} is not clearly better than "
            f"{_TRIVIAL_NAMES.get(comparison.trivial, comparison.trivial)} "
            f"({_required(comparison)}): this model is no better than chance; do not deploy it."
        )
    else:
        head = (
            f"{name} {model} is not below "
            f"{_TRIVIAL_NAMES.get(comparison.trivial, comparison.trivial)}'s "
            f"{_value(comparison, comparison.required)}: the model adds nothing to it; "
            "do not deploy it."
        )
    lines = [head, f"  baselines on the same test split: {baseline_summary(comparison)}"]
    lines.append("  likely causes, and what to try:")
    lines += [f"  - {cause}: try {flag}" for cause, flag in _advice(facts)]
    lines.append(
        "  --min-accuracy X or --require-baseline make such a run fail instead of writing it."
    )
    return ("\n".join(lines),)
