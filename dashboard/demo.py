"""The demo zoo as the dashboard sees it: where it lives, the family it gives, building it, and
evaluating a merge on its test data. No streamlit import; pages pass progress callbacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from dashboard.runs import LockedEvaluator
from dashboard.sources import FamilySource
from tadrop import zoo

DEMO_ZOO = "text"
DEMO_SIZE = "quick"

Progress = Callable[[float, str], None]


def demo_home() -> Path:
    """The zoo's home folder (``$TADROP_HOME``, else ``~/.cache/tadrop``)."""
    return zoo.tadrop_home().resolve()


def demo_source(tasks: Sequence[str] | None = None) -> FamilySource | None:
    """The demo family (all its tasks, or ``tasks`` in the zoo's order) if the zoo is built."""
    try:
        loaded = zoo.load_zoo(DEMO_ZOO, DEMO_SIZE, home=demo_home())
    except zoo.ZooError:
        return None
    task_dirs = dict(loaded.task_dirs)
    if tasks is not None:
        unknown = sorted(set(tasks) - set(task_dirs))
        if unknown or not tasks:
            raise ValueError(
                f"Choose one or more of the demo's tasks ({', '.join(task_dirs)}); got {list(tasks)}."
            )
        task_dirs = {task: path for task, path in task_dirs.items() if task in tasks}
    subset = "" if len(task_dirs) == len(loaded.task_dirs) else f"; {len(task_dirs)} tasks"
    return FamilySource(
        label=f"demo zoo ({DEMO_ZOO}, {DEMO_SIZE}{subset})",
        base=str(loaded.base_dir),
        finetuned=tuple(str(path) for path in task_dirs.values()),
        task_names=tuple(task_dirs),
        demo_zoo=DEMO_ZOO,
        demo_size=DEMO_SIZE,
        zoo_dir=str(loaded.root),
    )


def build_demo(progress: Progress) -> FamilySource:
    """Build the quick text zoo (minutes, once; the zoo locks against a second builder).

    An exception raised by ``progress`` (Streamlit stopping the script) cancels the build;
    the tasks already finished are kept and the next build resumes from them.
    """
    zoo.build_zoo(DEMO_ZOO, DEMO_SIZE, home=demo_home(), progress=progress)
    built = demo_source()
    if built is None:
        raise zoo.ZooError(f"The demo zoo was built in {demo_home()} but cannot be opened.")
    return built


def open_demo_zoo(source: FamilySource) -> zoo.Zoo:
    """The zoo behind a demo source (its heads, test sets and recorded accuracies)."""
    if not source.is_demo:
        raise ValueError(
            "Evaluation needs labelled data: here only the demo zoo has it. Use the data-free "
            "diagnostics for your own checkpoints."
        )
    return zoo.load_zoo(source.demo_zoo, source.demo_size, home=Path(source.zoo_dir).parent.parent)


class SharedEvaluator(LockedEvaluator):
    """The demo zoo's evaluator, shared by every session of the server (calls take turns on
    the lock: ``ZooEvaluator`` loads each scored model into one backbone module). Encoded test
    sets stay cached; individual and base accuracies come from the zoo's manifest."""

    def __init__(self, loaded: zoo.Zoo) -> None:
        from tadrop.evaluate import ZooEvaluator

        super().__init__(ZooEvaluator(loaded))

    def individual_scores(self) -> dict[str, dict[str, float]]:
        return self.evaluator.individual_scores()

    def base_scores(self) -> dict[str, dict[str, float]]:
        return self.evaluator.base_scores()
