"""Widget groups several pages share: the family guard, TADrop's quantile controls, error
display, and inputs for a registry class's parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.jobs import JobProgress, StatisticsJob
from tadrop.merge.emr import OUTPUTS, SPARSIFY_MODES
from tadrop.merge.ties import DIVISORS, ELECT_MODES, TIES_COMPAT, ZERO_SIGN_MODES
from tadrop.registry import param_specs, parameters_of
from tadrop.sparsify.base import RESCALE_MODES, SCOPES
from tadrop.sparsify.magnitude import COUNT_RULES
from tadrop.sparsify.tadrop_drop import quantile_problem
from tadrop.stats import TensorCut, tensor_cut
from tadrop.task_vectors import ModelFamily

MODELS_PAGE = "views/models.py"
EPS_CHOICES = (1e-12, 1e-9, 1e-6, 1e-4, 1e-3, 1e-2)

# Text parameters with a fixed set of values, shown as a select box (the library's constants).
PARAMETER_CHOICES: dict[str, tuple[str, ...]] = {
    "rescale": RESCALE_MODES,
    "scope": SCOPES,
    "elect": ELECT_MODES,
    "zero_sign": ZERO_SIGN_MODES,
    "divisor": DIVISORS,
    "sparsify": SPARSIFY_MODES,
    "count": COUNT_RULES,
    "compat": (None, *TIES_COMPAT),
    "output": OUTPUTS,
}

# Library errors are ValueError subclasses (CheckpointError, FamilyError, PathRefused...);
# OSError covers files that vanish or cannot be read. Both are shown, never a traceback.
USER_ERRORS = (ValueError, OSError)


def show_error(error: BaseException, *, what: str = "") -> None:
    """The library's message as ``st.error``; the app keeps running."""
    prefix = f"{what}: " if what else ""
    st.error(f"{prefix}{error}", icon=":material/error:")


def call_or_error(action: Callable[[], Any], *, what: str = "") -> Any | None:
    """Run ``action``; on an error show it and return None, so the page goes on.

    User errors show the library's message; anything else is a bug, shown with its traceback
    folded away. (Streamlit's own stop/rerun signals are BaseExceptions and pass through.)
    """
    try:
        return action()
    except USER_ERRORS as error:
        show_error(error, what=what)
    except Exception as error:  # noqa: BLE001 - keep the app alive, show the bug
        show_error(error, what=f"Unexpected {type(error).__name__} in {what or 'the library'}")
        with st.expander("Traceback (please report it)"):
            st.exception(error)
    return None


def run_cancellable(
    work: Callable[[Callable[[int, int, str], None]], Any], *, key: str, label: str, what: str
) -> Any | None:
    """Run ``work(progress)`` under a progress bar and a Cancel button (``key``); return its
    result, or None after showing its error. Both widgets are removed afterwards."""
    cancel_slot = st.empty()
    cancel_slot.button("Cancel", key=key, on_click=state.request_cancel)
    bar = st.progress(0.0, text=label)

    def progress(done: int, total: int, text: str) -> None:
        bar.progress(done / total, text=text)

    result = call_or_error(lambda: work(progress), what=what)
    bar.empty()
    cancel_slot.empty()
    return result


def require_family() -> tuple[state.FamilySource, ModelFamily]:
    """The session's family, or a pointer to the Models page and the end of this page."""
    source = state.chosen_source()
    if source is None:
        st.info("No model family is loaded yet: build the demo zoo or pick checkpoints.")
        st.page_link(MODELS_PAGE, label="Go to Models", icon=":material/inventory_2:")
        st.stop()
    opened = call_or_error(lambda: state.family(source), what=f"Opening {source.label}")
    if opened is None:
        st.page_link(
            MODELS_PAGE, label="Choose other checkpoints on Models", icon=":material/inventory_2:"
        )
        st.stop()
    return source, opened


def require_statistics(source: state.FamilySource, family: ModelFamily) -> pd.DataFrame:
    """The family's statistics table: computed once per server in the background (started
    with the server for ``tadrop dashboard --family``), its progress drawn here (tensors done
    and the time left), then read from the caches."""
    if not state.statistics_ready(source.key, family):
        job = state.statistics_job(source, family)
        computed = call_or_error(lambda: wait_for_statistics(job), what="Statistics")
        if computed is None:
            st.stop()
        state.keep_statistics(source.key, state.device(), family, computed)
    table = call_or_error(
        lambda: state.statistics(source.key, state.device(), family), what="Statistics"
    )
    if table is None:
        st.stop()
    return table


# The bar is redrawn at most this often: every redraw costs the browser a render of the page
# (~14 ms of CPU in headless Chromium for a bar alone, 200 redraws measured), taken from the
# cores the statistics run on.
PROGRESS_INTERVAL_S = 0.5


def wait_for_statistics(
    job: StatisticsJob, interval_s: float = PROGRESS_INTERVAL_S
) -> pd.DataFrame | None:
    """The job's table, its progress drawn every ``interval_s`` until it is done; raises the
    job's error."""
    if not job.wait(0):
        bar = st.progress(0.0, text="Computing task-vector statistics…")
        while not job.wait(interval_s):
            bar.progress(*progress_display(job.progress()))
        bar.empty()
    if job.error is not None:
        raise job.error
    return job.table


def progress_display(progress: JobProgress) -> tuple[float, str]:
    """(fraction, text) of the statistics bar: tensors done, the time left, the last tensor."""
    text = f"Statistics: {progress.done}/{progress.total} tensors"
    if progress.seconds_left is not None:
        text += f", about {format_duration(progress.seconds_left)} left"
    return progress.fraction, f"{text} ({progress.name})" if progress.name else text


def format_duration(seconds: float) -> str:
    """12 s, 3 min, 1.5 h."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def quantile_controls(container: Any = st) -> tuple[float, float, float]:
    """Sliders for TADrop's a and b and a choice of eps; returns valid (a, b, eps) or stops."""
    left, middle, right = container.columns([2, 2, 1])
    stored_a, stored_b, stored_eps = state.quantile_settings()
    a = left.slider("a (lower quantile)", 0.01, 0.99, value=stored_a, step=0.01, key="slider_a")
    b = middle.slider(
        "b (upper quantile)", 0.50, 0.999, value=stored_b, step=0.001, key="slider_b", format="%.3f"
    )
    eps = right.select_slider(
        "ε", options=EPS_CHOICES, value=stored_eps, key="slider_eps", format_func="{:.0e}".format
    )
    state.store_quantile_settings(a, b, eps)
    if quantile_problem(a, b, eps) is not None:  # the sliders only allow a >= b to go wrong
        container.error(f"TADrop needs a < b; now a = {a:g} and b = {b:g}. Lower a or raise b.")
        st.stop()
    return float(a), float(b), float(eps)


def parameter_inputs(
    cls: type, *, key_prefix: str, defaults: dict[str, Any] | None = None, container: Any = st
) -> dict[str, Any]:
    """One input per constructor parameter of a merge method or sparsifier, defaults preset
    (``defaults`` overrides the class's own, e.g. TADrop's a and b from the sliders)."""
    values: dict[str, Any] = {}
    specs = param_specs(cls)  # kinds from the constructor's annotations (tadrop.params)
    for name, default in {**parameters_of(cls), **(defaults or {})}.items():
        key = f"{key_prefix}_{cls.__name__}_{name}"
        label = name.replace("_", " ")
        kind = specs[name].kind
        if name in PARAMETER_CHOICES:
            options = list(PARAMETER_CHOICES[name])
            index = options.index(default) if default in options else 0
            values[name] = container.selectbox(label, options, index=index, key=key)
        elif kind == "weights" or default is None:
            continue  # per-task weights, DARE's density: not set here (all tasks weigh 1; p)
        elif kind == "bool":
            values[name] = container.checkbox(label, value=bool(default), key=key)
        elif kind == "int":
            values[name] = int(
                container.number_input(label, value=int(default or 0), step=1, key=key)
            )
        elif kind == "float":
            values[name] = float(
                container.number_input(label, value=float(default or 0.0), format="%.6g", key=key)
            )
        else:
            values[name] = container.text_input(
                label, value="" if default is None else str(default), key=key
            )
    return values


def one_tensor(
    source: Any,
    family: ModelFamily,
    stats: pd.DataFrame,
    task: str,
    tensor: str,
    cut_at: tuple[float, float, float],
    log_x: bool,
) -> tuple[pd.DataFrame, TensorCut, pd.DataFrame | None]:
    """What the Heterogeneity and Learn pages draw for one task's tensor: its statistics row,
    TADrop's cut at ``cut_at`` = (a, b, eps) from its sketch, and its |tau| histogram (None,
    with the error shown, when the tensor cannot be read)."""
    row = stats[(stats["task"] == task) & (stats["tensor"] == tensor)]
    sketch = state.sketches(source.key, state.device(), family)[row.index]  # (1, SKETCH_POINTS)
    histogram = call_or_error(
        lambda: state.magnitude_histogram(source.key, task, tensor, log_x, state.device(), family),
        what=f"Reading {tensor}",
    )
    return row, tensor_cut(row, *cut_at, sketch), histogram
