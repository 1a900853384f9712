"""Terminal output: logs and progress on stderr, results on stdout, never mixed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from edgelstm.training.trainer import ProgressCallback, TrainResult


def stderr_console() -> Console:
    """Logs on stderr: wrapped to a terminal's width, but one line per message in a pipe or a
    log file (rich would wrap at 80 columns there, splitting a line mid-sentence for grep)."""
    from rich.console import Console

    console = Console(stderr=True)
    console.soft_wrap = not console.is_terminal
    return console


def stdout_console(*, min_width: int | None = None) -> Console:
    """Results console; ``min_width`` keeps wide tables readable when stdout is a file/pipe."""
    from rich.console import Console

    console = Console()
    if min_width is not None and not console.is_terminal and console.width < min_width:
        console = Console(width=min_width)
    console.soft_wrap = not console.is_terminal  # a line of text stays one line in a file
    return console


def _progress_bar(console: Console, fields: str | None = None, *, transient: bool = False) -> Any:
    """One look for every bar: name, bar, done/total, ``fields`` (a format of the task's
    fields), elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if fields is not None:
        columns.append(TextColumn(fields))
    return Progress(*columns, TimeElapsedColumn(), console=console, transient=transient)


@contextlib.contextmanager
def training_progress(console: Console, enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """A progress bar with loss and the validation metric, as a training callback.

    The bar starts at the first epoch, so a run that fails while loading data prints only
    its error line.
    """
    if not enabled:
        yield None
        return
    bar = _progress_bar(console, "loss {task.fields[loss]:.4f}  {task.fields[shown]}")
    tasks: dict[str, Any] = {}

    def update(epoch: int, total: int, loss: float, shown: str) -> None:
        if not tasks:
            bar.start()
        phase = "refit" if shown.startswith("refit") else "train"
        if phase not in tasks:
            if phase == "refit" and "train" in tasks:
                bar.stop_task(tasks["train"])  # early stopping ended it: freeze its clock
            tasks[phase] = bar.add_task(phase, total=total, loss=loss, shown=shown)
        bar.update(tasks[phase], completed=epoch, total=total, loss=loss, shown=shown)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


@contextlib.contextmanager
def count_progress(
    console: Console, description: str, enabled: bool = True, *, log_every: float | None = None
) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback drawing a bar; None when disabled.

    Bars are drawn only on a terminal, so redirected stderr keeps just the log lines; with
    ``log_every`` (seconds) a redirected run gets a line that often instead (long batch
    jobs whose log is read while they run).
    """
    if enabled and not console.is_terminal and log_every is not None:
        last = [time.monotonic()]

        def log(done: int, total: int) -> None:
            now = time.monotonic()
            if done == total or now - last[0] >= log_every:
                last[0] = now
                console.print(f"{description}: {done}/{total}", highlight=False, markup=False)

        yield log
        return
    if not enabled or not console.is_terminal:
        yield None
        return
    bar = _progress_bar(console, transient=True)
    task: list[Any] = []

    def update(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(description, total=total))
        bar.update(task[0], completed=done, total=total)

    try:
        yield update
    finally:
        if task:
            bar.stop()


def _format_metric(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_train_result(result: TrainResult, console: Console) -> None:
    """The end-of-training summary: where the checkpoint is and the test metrics."""
    from rich.table import Table

    record = result.record
    table = Table(title=f"test metrics — {record.dataset.name} ({record.model.task})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.metrics.items():
        table.add_row(key, _format_metric(value))
    console.print(table)
    epochs = f"{result.epochs_run} epochs, best at {result.best_epoch}"
    console.print(
        f"checkpoint: {result.out}  ({record.model.describe()}, {epochs}, {result.seconds:.1f} s)"
    )
    weights = result.metrics.get("weights_mb")
    cost = [] if weights is None else [f"{weights:.2f} MB of FP32 weights"]
    if result.sequence_ms is not None:
        cost.append(f"{result.sequence_ms:.2f} ms per typical sequence in PyTorch at batch 1")
    if cost:
        console.print(f"model cost: {', '.join(cost)}", highlight=False)


def print_dataset_table(rows: list[dict[str, str]], console: Console) -> None:
    """Built-in datasets with task and sizes, then where each comes from."""
    from rich.table import Table

    columns = ("name", "task", "domain", "train", "test", "length", "features")
    table = Table(title="built-in datasets (bundled with aeon; no network needed)")
    for column in columns:
        table.add_column(column, no_wrap=column in ("name", "task"))
    for row in rows:
        table.add_row(*(row.get(c, "") for c in columns))
    console.print(table)
    for row in rows:
        console.print(f"  {row['name']}: {row.get('source', '')}", highlight=False)
