"""Merge & evaluate (the paper's Fig. 1 and Table 7): merge with or without a sparsifier,
compare per task, sweep sparsity and TADrop's (a, b); data-free diagnostics for any family."""

import streamlit as st

from dashboard import figures, runs, state, sweeps, widgets
from tadrop import registry
from tadrop.diagnostics import COLUMN_HELP
from tadrop.evaluate import KINDS
from tadrop.evaluate.clip import DEFAULT_TEMPLATE
from tadrop.evaluate.lm_data import LM_METRICS
from tadrop.experiments import MATCHED_SPARSIFIERS
from tadrop.figures.results import error_bar_note

st.title("Merge & evaluate")
source, family = widgets.require_family()
records = state.runs()
a, b, eps = state.quantile_settings()


def own_eval_data():
    """Evaluation data typed per task for an own family: (EvalSpec or None)."""
    with st.expander("Evaluation data: one file or folder per task, under the data root"):
        st.caption(
            "Causal LMs: a text file (perplexity) or JSON lines with question/choices/answer "
            "(multiple choice) or prompt/answer (exact match). CLIP: an image folder with one "
            "subfolder per class. Sequence classifiers: CSV/JSONL with text and label."
        )
        kind_column, metric_column = st.columns(2)
        kind = kind_column.selectbox("Model kind", ["from config.json", *KINDS], key="eval_kind")
        metric = metric_column.selectbox(
            "Causal LM metric", ["from the file", *LM_METRICS], key="eval_metric"
        )
        template = st.text_input("CLIP prompt", DEFAULT_TEMPLATE, key="eval_template")
        typed = {
            task: st.text_input(f"Data for {task}", key=f"eval_data_{task}")
            for task in family.task_names
        }
    return widgets.call_or_error(
        lambda: runs.eval_spec(
            source,
            typed,
            state.data_roots(),
            kind="" if kind not in KINDS else kind,
            metric="" if metric not in LM_METRICS else metric,
            template=template,
        ),
        what="Evaluation data",
    )


def make_evaluator():
    """The demo zoo's evaluator, or the own family's with its cached reference scores."""
    if source.is_demo:
        return state.evaluator(source)
    shared = state.own_evaluator(source, spec, state.device(), family)
    individual, base = state.own_reference_scores(source.key, spec, state.device(), shared, family)
    return shared.with_references(individual, base)


spec = None if source.is_demo else own_eval_data()
evaluable = source.is_demo or spec is not None

cancelled = st.session_state.pop("merge_cancelled", False)
interrupted = st.session_state.pop("merge_running", False)
if cancelled:
    st.warning("Cancelled; the unfinished merge was not kept.")
elif interrupted:
    st.warning("The last merge was interrupted before it finished; it was not kept.")

with st.container(border=True):
    method_column, sparsifier_column = st.columns(2)
    method_names = registry.method_names()
    method = method_column.selectbox(
        "Merge method", method_names, index=method_names.index("emr"), key="merge_method"
    )
    sparsifier_names = registry.sparsifier_names()
    sparsifier = sparsifier_column.selectbox(
        "Sparsifier",
        sparsifier_names,
        index=sparsifier_names.index("tadrop"),
        key="merge_sparsifier",
    )
    method_class, sparsifier_class = runs.classes_for(method, sparsifier)
    with method_column.expander("Method parameters"):
        method_params = widgets.parameter_inputs(method_class, key_prefix="merge_m")
    sparsifier_params = {}
    if sparsifier_class is not None:
        if sparsifier == "tadrop":
            sparsifier_column.caption(
                f"TADrop a = {a:g}, b = {b:g}, ε = {eps:g} from Sparsity landscape; "
                "change them there or below."
            )
        with sparsifier_column.expander("Sparsifier parameters"):
            defaults = {"a": a, "b": b, "eps": eps} if sparsifier == "tadrop" else {}
            sparsifier_params = widgets.parameter_inputs(
                sparsifier_class, key_prefix="merge_s", defaults=defaults
            )
    options = st.columns(3)
    compare = options[0].checkbox(
        "Also run without the sparsifier",
        value=True,
        key="merge_compare",
        disabled=sparsifier == "none",
    )
    evaluate = options[1].checkbox(
        "Evaluate on the demo's test data"
        if source.is_demo
        else "Evaluate on the attached data"
        if evaluable
        else "Evaluate (attach data above)",
        value=evaluable,
        disabled=not evaluable,
        key="merge_evaluate",
    )
    diagnose = options[2].checkbox(
        "Data-free diagnostics", value=not evaluable, key="merge_diagnose"
    )
    run_clicked = st.button("Run merge", type="primary", key="merge_run")


def run_variant(variant_sparsifier: str, variant_params: dict, progress) -> runs.RunRecord | None:
    """Merge (then evaluate and diagnose) one variant, reporting to ``progress``."""
    record = runs.execute_merge(
        family,
        number=len(records) + 1,
        method=method,
        sparsifier=variant_sparsifier,
        method_params=method_params,
        sparsifier_params=variant_params,
        family_label=source.label,
        family_key=source.key,
        device=state.device(),
        progress=lambda done, total, name: progress(done, total, f"Merging {done}/{total}: {name}"),
    )
    if evaluate:
        record.results = runs.evaluate_record(
            record,
            make_evaluator(),
            lambda fraction, text: progress(round(fraction * 100), 100, f"Evaluating: {text}"),
        )
    if diagnose:
        progress(1, 1, "Diagnostics…")
        runs.diagnose_record(record)
    return record


if run_clicked:
    variants = [(sparsifier, sparsifier_params)]
    if compare and sparsifier != "none":
        variants.append(("none", {}))
    st.session_state["merge_running"] = True
    for index, variant in enumerate(variants):
        record = widgets.run_cancellable(
            lambda progress, variant=variant: run_variant(*variant, progress),
            key=f"merge_cancel_{index}",
            label="Merging…",
            what="Merge",
        )
        if record is None:
            break
        if index > 0:  # the comparison run made beside the one asked for
            record.extras["baseline_of"] = records[-1].number
        records.append(record)
        runs.forget_old_models(records)
    st.session_state["merge_running"] = False


def show_diagnostics(frame, key: str) -> None:
    """A diagnostics table whose columns explain themselves (hover a header; caption below)."""
    explained = [column for column in frame.columns if column in COLUMN_HELP]
    st.dataframe(
        frame,
        hide_index=True,
        key=key,
        column_config={
            column: st.column_config.NumberColumn(column, help=COLUMN_HELP[column], format="%.4f")
            for column in explained
        },
    )
    st.caption("  \n".join(f"**{column}**: {COLUMN_HELP[column]}" for column in explained))


def show_runs() -> None:
    """The session's runs: overview, per-task results side by side, diagnostics."""
    st.subheader("Runs in this session")
    st.dataframe(runs.runs_overview(records), hide_index=True, key="merge_overview")
    labels = [record.label for record in records]
    # keyed by the run count, so that a new run starts a comparison of the newest runs instead of
    # keeping the selection made before it (issue 15 bug 1)
    chosen = st.multiselect(
        "Compare runs", labels, default=labels[-2:], key=f"merge_chosen_{len(records)}"
    )
    chosen_records = [record for record in records if record.label in chosen]
    results = runs.results_table(chosen_records)
    if not results.empty:
        value = st.radio("Show", ["merged", "normalized"], horizontal=True, key="merge_value")
        metrics = list(dict.fromkeys(results["metric"]))
        if len(metrics) > 1:  # e.g. acc and acc_norm: one metric per chart
            shown = st.selectbox("Metric", metrics, key="merge_metric")
            plotted = results[results["metric"] == shown]
        else:
            plotted = results
        st.plotly_chart(figures.results_bars(plotted, value=value), key="merge_bars")
        st.caption(
            "The y axis is zoomed to the scores (it does not start at 0). Under each task: n, "
            f"its number of test examples; {error_bar_note(plotted['metric'], value)}. "
            "Marks: the individual (fine-tuned) and base models per task; dashed lines: their "
            "means over tasks."
        )
        st.table(results.round(4))
    for record in chosen_records:
        if record.diagnostics is not None:
            st.markdown(f"**Data-free diagnostics of {record.label}**")
            left, right = st.columns(2)
            with left:
                show_diagnostics(record.diagnostics, f"merge_diag_{record.number}")
            with right:
                show_diagnostics(record.pair_diagnostics, f"merge_pairs_{record.number}")


if records:
    show_runs()
else:
    st.info("No run yet. Choose a method and press Run merge (EMR + TADrop is a good start).")


def run_sparsity_sweep(targets_text: str, sparsifiers: list[str], baseline: bool) -> None:
    """Solve TADrop's a per target (from the statistics' sketches), then merge every point."""
    targets = widgets.call_or_error(lambda: sweeps.parse_numbers(targets_text), what="Targets")
    if targets is None:
        return
    settings = []
    if "tadrop" in sparsifiers:
        stats = widgets.require_statistics(source, family)
        sketches = state.sketches(source.key, state.device(), family)
        settings = widgets.call_or_error(
            lambda: sweeps.solved_settings(stats, sketches, targets, b=b, eps=eps),
            what="Solving TADrop's a",
        )
        if settings is None:
            return
        for setting in settings:
            if abs(setting.reached - setting.target) > 0.01:
                st.warning(
                    f"TADrop reaches {setting.reached:.3f}, not {setting.target:g}, at "
                    f"b = {b:g} (a = {setting.a:.4f}): tensors whose Q_b is 0 (mostly zeros) "
                    "drop nothing at any a. Raise b on Sparsity landscape to reach more."
                )
    run_and_keep(
        "sweep",
        lambda progress: sweeps.sweep(
            **shared_sweep_arguments(progress),
            sparsifiers=sparsifiers,
            targets=targets,
            tadrop_settings=settings,
            baseline=baseline,
        ),
    )


def shared_sweep_arguments(progress) -> dict:
    """What both sweeps pass: the family, the method chosen above, eps, evaluator, device."""
    return {
        "family": family,
        "source": source,
        "method": method,
        "method_params": method_params,
        "eps": eps,
        "evaluator": make_evaluator() if evaluate else None,
        "device": state.device(),
        "progress": progress,
    }


def run_and_keep(name: str, action) -> None:
    """Run a sweep with a Cancel button; keep its table as ``{name}_points`` in the session."""
    table = widgets.run_cancellable(
        action, key=f"{name}_cancel", label="Sweeping…", what=name.capitalize()
    )
    if table is not None:
        st.session_state[f"{name}_points"] = table


st.subheader("Sweeps")
SWEEP_SECTIONS = ("Accuracy vs sparsity (Fig. 1 left)", "(a, b) sensitivity (Table 7)")
# a keyed radio, not st.tabs: tabs reopen the first one when a rerun changes the page above them
# (typing in the grid right after a merge jumped back to Fig. 1: issue 15 bug 3)
section = st.radio("Sweep", SWEEP_SECTIONS, horizontal=True, key="merge_sweep_section")
if section == SWEEP_SECTIONS[0]:
    st.caption(
        f"Merges with {method} at the same target overall sparsities for every sparsifier: "
        "DARE drops p = target, magnitude keeps 1 − target, uniform drops the target fraction "
        "of every tensor's smallest |τ| (rescaled like TADrop, the paper's contrast), TADrop "
        f"keeps b = {b:g} and moves a until its overall sparsity (numel-weighted, from the "
        "quantile sketches) is the target. The dashed line is the merge without a sparsifier. "
        "The score is the mean normalized accuracy, or the mean data-free cosine to each task "
        "vector without evaluation data."
    )
    sweep_sparsifiers = st.multiselect(
        "Sparsifiers", MATCHED_SPARSIFIERS, default=["tadrop", "dare"], key="sweep_sparsifiers"
    )
    targets_text = st.text_input("Target overall sparsities", "0.3, 0.6, 0.9", key="sweep_targets")
    baseline = st.checkbox(
        "Also merge without a sparsifier (reference line)", value=True, key="sweep_baseline"
    )
    if st.button("Run sweep", key="sweep_run"):
        run_sparsity_sweep(targets_text, sweep_sparsifiers, baseline)
    swept = st.session_state.get("sweep_points", sweeps.empty_sweep())
    scored_by = {"score_label": swept["score_kind"].iloc[0]} if not swept.empty else {}
    st.plotly_chart(figures.sparsity_sweep(swept, **scored_by), key="sweep_figure")
    if not swept.empty:
        st.dataframe(
            swept.drop(columns=["setting"]),
            hide_index=True,
            key="sweep_table",
            column_config={
                "target": st.column_config.NumberColumn("target sparsity", format="%.3f"),
                "sparsity": st.column_config.NumberColumn("reached sparsity", format="%.3f"),
                "a": st.column_config.NumberColumn("a", format="%.4f"),
                "b": st.column_config.NumberColumn("b", format="%.3f"),
                "score": st.column_config.NumberColumn("score", format="%.4f"),
            },
        )
else:
    grid_as = st.text_input("a values", "0.3, 0.5, 0.7", key="grid_as")
    grid_bs = st.text_input("b values", "0.9, 0.95, 0.99", key="grid_bs")
    if st.button("Run grid", key="grid_run"):
        run_and_keep(
            "grid",
            lambda progress: sweeps.sensitivity_grid(
                **shared_sweep_arguments(progress),
                a_values=sweeps.parse_numbers(grid_as),
                b_values=sweeps.parse_numbers(grid_bs),
            ),
        )
    grid = st.session_state.get("grid_points", sweeps.empty_grid())
    st.plotly_chart(figures.sensitivity_heatmap(grid), key="grid_figure")
    if not grid.empty:
        st.dataframe(grid, hide_index=True, key="grid_table")
