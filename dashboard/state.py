"""Session state and the dashboard's only ``st.cache_*`` wrappers.

Shared by every browser session (``st.cache_resource``, never modified once made): opened
checkpoint families, the statistics table with its quantile sketches (and the sketches as one
read-only matrix), the demo zoo's evaluator. A copy per call (``st.cache_data``): the
statistics table without sketches, drop rates, histograms, download bytes, checkpoint lists.
Per session (``st.session_state``): the chosen family, the device, TADrop's (a, b, eps), the
merge runs and sweeps, so two sessions never see each other's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import exports, jobs, paths
from dashboard import runs as run_records
from dashboard.demo import SharedEvaluator, demo_home, demo_source, open_demo_zoo
from dashboard.sources import FamilySource, command_line_family, open_family
from tadrop import stats as tadrop_stats
from tadrop.sparsify.tadrop_drop import DEFAULT_A, DEFAULT_B, DEFAULT_EPS
from tadrop.stats.cache import is_cached
from tadrop.task_vectors import ModelFamily, iter_task_vectors

# Settings that live across pages. Widgets showing them use their own keys and copy their
# value here (Streamlit forgets a widget's state when a page without it runs).
DEFAULTS: dict[str, object] = {
    "tadrop_a": DEFAULT_A,
    "tadrop_b": DEFAULT_B,
    "tadrop_eps": DEFAULT_EPS,
    "device": jobs.DEFAULT_DEVICE,
}


def init_session() -> None:
    """Fill the session's missing settings with their defaults."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault("runs", [])


def data_roots() -> tuple[Path, ...]:
    """The data roots of this server (command line after ``--``, environment, defaults)."""
    return paths.data_roots(sys.argv[1:], default_roots=[demo_home()])


def readable_roots(source: FamilySource) -> tuple[Path, ...]:
    """Where the files of ``source``'s family may be read from: the data roots, plus the demo
    zoo's own folder for the demo (tadrop built it; it may lie outside a --data-root)."""
    roots = data_roots()
    if source.is_demo and source.zoo_dir:
        return (*roots, Path(source.zoo_dir).resolve())
    return roots


def quantile_settings() -> tuple[float, float, float]:
    """(a, b, eps) chosen in this session."""
    return (
        float(st.session_state.get("tadrop_a", DEFAULTS["tadrop_a"])),
        float(st.session_state.get("tadrop_b", DEFAULTS["tadrop_b"])),
        float(st.session_state.get("tadrop_eps", DEFAULTS["tadrop_eps"])),
    )


def store_quantile_settings(a: float, b: float, eps: float) -> None:
    st.session_state["tadrop_a"], st.session_state["tadrop_b"] = float(a), float(b)
    st.session_state["tadrop_eps"] = float(eps)


def device() -> str:
    return str(st.session_state.get("device", DEFAULTS["device"]))


def chosen_source() -> FamilySource | None:
    """The family this session works on: the one picked on Models, else the one the server
    was started with (``tadrop dashboard --family``), else the demo if built."""
    source = st.session_state.get("family_source")
    if source is not None:
        return source
    return command_line_family(sys.argv[1:]) or demo_source()


def choose_source(source: FamilySource) -> None:
    st.session_state["family_source"] = source


@st.cache_resource(show_spinner="Opening checkpoints…", max_entries=4)
def family(source: FamilySource) -> ModelFamily:
    """The opened family (memory-mapped checkpoints), shared and never modified."""
    return open_family(source)


@st.cache_resource(show_spinner="Loading the demo zoo's test sets…", max_entries=2)
def evaluator(source: FamilySource) -> SharedEvaluator:
    """The demo zoo's evaluator (backbone module, heads, encoded test sets), built once."""
    return SharedEvaluator(open_demo_zoo(source))


@st.cache_resource(show_spinner="Loading the evaluation model…", max_entries=2)
def own_evaluator(
    source: FamilySource, spec: run_records.EvalSpec, device_name: str, _family: ModelFamily
) -> run_records.LockedEvaluator:
    """The evaluator of the data attached to an own family (one model module, data cached)."""
    return run_records.build_own_evaluator(source, spec, device_name, _family.task_names)


@st.cache_data(show_spinner="Scoring the fine-tuned and base models (once)…", max_entries=8)
def own_reference_scores(
    source_key: str,
    spec: run_records.EvalSpec,
    device_name: str,
    _evaluator: run_records.LockedEvaluator,
    _family: ModelFamily,
) -> tuple[dict, dict]:
    """(individual, base) scores of an own family on its attached data, computed once."""
    from tadrop.evaluate.kinds import reference_scores

    tasks = [task for task in _family.task_names if task in _evaluator.tasks]
    return reference_scores(_evaluator, _family, tasks)


@st.cache_resource(show_spinner=False, max_entries=4)
def full_statistics(
    source_key: str, device_name: str, _family: ModelFamily, _computed: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The statistics table with its quantile sketches, shared by sessions, so callers must
    not modify it (``statistics`` gives a copy without sketches). No side effects: the page
    waits for the server's statistics job under its progress bar (``statistics_job``) and
    hands the table over as ``_computed``; otherwise it comes from the on-disk cache (or is
    computed quietly when that cache cannot be written)."""
    if _computed is not None:
        return _computed
    return tadrop_stats.compute_stats(_family, device=device_name)


def statistics_ready(source_key: str, family: ModelFamily) -> bool:
    """Whether the table is at hand without reading tensors: handed over in this session, or
    in the on-disk statistics cache."""
    if source_key in st.session_state.setdefault("statistics_computed", set()):
        return True
    return is_cached(family, DEFAULT_A, DEFAULT_B, DEFAULT_EPS)


def statistics_job(source: FamilySource, family: ModelFamily) -> jobs.StatisticsJob:
    """The server's statistics job of this family and the session's device (joined if one
    runs, e.g. the one ``serve.py`` started, else started)."""
    return jobs.statistics_job(source.key, device(), lambda: family)


def keep_statistics(
    source_key: str, device_name: str, family: ModelFamily, table: pd.DataFrame
) -> pd.DataFrame:
    """Hand a computed table to the shared ``full_statistics`` cache (the job wrote it to the
    on-disk cache)."""
    st.session_state.setdefault("statistics_computed", set()).add(source_key)
    return full_statistics(source_key, device_name, family, table)


@st.cache_resource(show_spinner=False, max_entries=4)
def sketches(source_key: str, device_name: str, _family: ModelFamily) -> np.ndarray:
    """(rows, SKETCH_POINTS) read-only matrix of the table's quantile sketches."""
    matrix = tadrop_stats.sketch_matrix(full_statistics(source_key, device_name, _family))
    matrix.flags.writeable = False
    return matrix


@st.cache_data(show_spinner=False, max_entries=8)
def statistics(source_key: str, device_name: str, _family: ModelFamily) -> pd.DataFrame:
    """The statistics table without its sketches (row i <-> ``sketches(...)[i]``), a copy per
    call; small enough that a rerun copies it in milliseconds."""
    return full_statistics(source_key, device_name, _family).drop(columns=["sketch"])


@st.cache_data(show_spinner=False, max_entries=64)
def drop_rates(
    source_key: str, device_name: str, a: float, b: float, eps: float, _family: ModelFamily
) -> pd.DataFrame:
    """Identity columns of the statistics table with TADrop's d for (a, b, eps), computed from
    the sketches alone (no tensor is read)."""
    table = full_statistics(source_key, device_name, _family)
    rates = table[["task", "tensor", "layer", "kind", "numel"]].copy()
    matrix = sketches(source_key, device_name, _family)
    rates["drop_rate"] = tadrop_stats.drop_rates_from_sketch(table, a, b, eps, sketches=matrix)
    return rates


@st.cache_data(show_spinner=False, max_entries=8)
def statistics_file(source_key: str, device_name: str, suffix: str, _family: ModelFamily) -> bytes:
    """The statistics table as a .csv or .parquet (with sketches) file's bytes, for download."""
    return exports.statistics_bytes(full_statistics(source_key, device_name, _family), suffix)


@st.cache_data(show_spinner="Reading the tensor…", max_entries=32)
def magnitude_histogram(
    source_key: str, task: str, tensor: str, log: bool, device_name: str, _family: ModelFamily
) -> pd.DataFrame:
    """Histogram of |tau| of one task's tensor (reads that tensor once)."""
    (tensor_vectors,) = iter_task_vectors(_family, device=device_name, names=[tensor])
    index = _family.task_names.index(task)
    return tadrop_stats.abs_histogram(tensor_vectors.task_vectors[index], log=log)


@st.cache_data(show_spinner=False, ttl=30)
def checkpoint_candidates(roots: tuple[Path, ...], include_merged: bool = False) -> list[Path]:
    """Checkpoints found under the data roots, for the pickers (looked up again every 30 s)."""
    return paths.find_checkpoints(roots, include_merged=include_merged)


def request_cancel() -> None:
    """Cancel button callback: the click reruns the page, which stops the running merge."""
    st.session_state["merge_cancelled"] = True


def runs() -> list:
    """This session's list of ``RunRecord`` (mutable, per session)."""
    return st.session_state.setdefault("runs", [])
