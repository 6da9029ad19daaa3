"""The demo zoo as the dashboard sees it: where it lives, the family it gives, building it, and
evaluating a merge on its test data. No streamlit import; pages pass progress callbacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from dashboard.runs import LockedEvaluator
from dashboard.sources import FamilySource
from tadrop import zoo
from tadrop.experiments.zoo_numbers import family_numbers, zoo_numbers
from tadrop.zoo import synthetic

DEMO_ZOO = "text"  # the default demo family
DEMO_SIZE = "quick"
# choice -> what the Models page says about it; "synthetic" is generated, not fine-tuned
DEMO_FAMILIES = {
    "text": "text zoo: MiniLM fine-tuned on 6 text tasks (evaluable)",
    "image": "image zoo: EfficientNet-Lite0 fine-tuned on 3 image tasks (evaluable)",
    "synthetic": "synthetic: generated task vectors, a distribution per component (no data)",
}

Progress = Callable[[float, str], None]


def demo_home() -> Path:
    """The zoo's home folder (``$TADROP_HOME``, else ``~/.cache/tadrop``)."""
    return zoo.tadrop_home().resolve()


def _check_choice(which: str) -> None:
    if which not in DEMO_FAMILIES:
        raise ValueError(
            f"Unknown demo family {which!r}; choose one of {', '.join(DEMO_FAMILIES)}."
        )


def demo_choice_of(source: FamilySource | None) -> str | None:
    """Which demo family ``source`` is ("text", "image", "synthetic"), or None."""
    if source is None:
        return None
    if source.is_demo:
        return source.demo_zoo
    if source.zoo_dir and Path(source.zoo_dir) == synthetic.synthetic_path(demo_home()):
        return "synthetic"
    return None


def demo_source(tasks: Sequence[str] | None = None, which: str = DEMO_ZOO) -> FamilySource | None:
    """A demo family (all its tasks, or ``tasks`` in its order) if it is built, else None."""
    _check_choice(which)
    try:
        loaded = (
            synthetic.load_synthetic(demo_home())
            if which == "synthetic"
            else zoo.load_zoo(which, DEMO_SIZE, home=demo_home())
        )
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
    evaluable = which != "synthetic"  # the synthetic family has no labelled data
    label = f"demo zoo ({which}, {DEMO_SIZE}{subset})" if evaluable else f"synthetic family{subset}"
    return FamilySource(
        label=label,
        base=str(loaded.base_dir),
        finetuned=tuple(str(path) for path in task_dirs.values()),
        task_names=tuple(task_dirs),
        demo_zoo=which if evaluable else "",
        demo_size=DEMO_SIZE if evaluable else "",
        zoo_dir=str(loaded.root),
    )


def build_demo(progress: Progress, which: str = DEMO_ZOO) -> FamilySource:
    """Build a demo family (the zoos: minutes, once, locked against a second builder; the
    synthetic family: seconds).

    An exception raised by ``progress`` (Streamlit stopping the script) cancels the build;
    the tasks already finished and a checkpoint of the current one are kept, and the next
    build resumes from them.
    """
    _check_choice(which)
    if which == "synthetic":
        progress(0.0, "generating the synthetic family")
        synthetic.build_synthetic(demo_home(), measure=family_numbers)
    else:
        zoo.build_zoo(which, DEMO_SIZE, home=demo_home(), progress=progress, measure=zoo_numbers)
    built = demo_source(which=which)
    if built is None:
        raise zoo.ZooError(
            f"The demo family {which!r} was built in {demo_home()} but cannot be opened."
        )
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
