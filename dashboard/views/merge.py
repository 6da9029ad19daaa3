"""Merge & evaluate (the paper's Fig. 1 and Table 7): merge with or without a sparsifier,
compare per task, sweep sparsity and TADrop's (a, b); data-free diagnostics for any family."""

import streamlit as st

from dashboard import figures, runs, state, sweeps, widgets
from tadrop import registry

st.title("Merge & evaluate")
source, family = widgets.require_family()
records = state.runs()
evaluable = source.is_demo
a, b, eps = state.quantile_settings()

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
        "Evaluate on the demo's test data" if evaluable else "Evaluate (needs the demo zoo)",
        value=evaluable,
        disabled=not evaluable,
        key="merge_evaluate",
    )
    diagnose = options[2].checkbox(
        "Data-free diagnostics", value=not evaluable, key="merge_diagnose"
    )
    run_clicked = st.button("Run merge", type="primary", key="merge_run")


def run_variant(variant_sparsifier: str, variant_params: dict) -> runs.RunRecord | None:
    """Merge (then evaluate and diagnose) one variant with a progress bar; None on error."""
    bar = st.progress(0.0, text="Merging…")

    def progress(done: int, total: int, name: str) -> None:
        bar.progress(done / total, text=f"Merging {done}/{total}: {name}")

    record = widgets.call_or_error(
        lambda: runs.execute_merge(
            family,
            number=len(records) + 1,
            method=method,
            sparsifier=variant_sparsifier,
            method_params=method_params,
            sparsifier_params=variant_params,
            family_label=source.label,
            family_key=source.key,
            device=state.device(),
            progress=progress,
        ),
        what="Merge",
    )
    if record is not None and evaluate:
        record.results = widgets.call_or_error(
            lambda: runs.evaluate_record(
                record,
                state.evaluator(source),
                lambda fraction, text: bar.progress(fraction, text=f"Evaluating: {text}"),
            ),
            what="Evaluation",
        )
    if record is not None and diagnose:
        bar.progress(1.0, text="Diagnostics…")
        widgets.call_or_error(lambda: runs.diagnose_record(record), what="Diagnostics")
    bar.empty()
    return record


if run_clicked:
    variants = [(sparsifier, sparsifier_params)]
    if compare and sparsifier != "none":
        variants.append(("none", {}))
    cancel_slot = st.empty()
    cancel_slot.button("Cancel", key="merge_cancel", on_click=state.request_cancel)
    st.session_state["merge_running"] = True
    for variant in variants:
        record = run_variant(*variant)
        if record is None:
            break
        records.append(record)
        runs.forget_old_models(records)
    st.session_state["merge_running"] = False
    cancel_slot.empty()


def show_runs() -> None:
    """The session's runs: overview, per-task results side by side, diagnostics."""
    st.subheader("Runs in this session")
    st.dataframe(runs.runs_overview(records), hide_index=True, key="merge_overview")
    labels = [record.label for record in records]
    chosen = st.multiselect("Compare runs", labels, default=labels[-2:], key="merge_chosen")
    chosen_records = [record for record in records if record.label in chosen]
    results = runs.results_table(chosen_records)
    if not results.empty:
        value = st.radio("Show", ["merged", "normalized"], horizontal=True, key="merge_value")
        st.plotly_chart(figures.results_bars(results, value=value), key="merge_bars")
        st.table(results.round(4))
    for record in chosen_records:
        if record.diagnostics is not None:
            st.markdown(f"**Data-free diagnostics of {record.label}**")
            left, right = st.columns(2)
            left.dataframe(record.diagnostics, hide_index=True)
            right.dataframe(record.pair_diagnostics, hide_index=True)


if records:
    show_runs()
else:
    st.info("No run yet. Choose a method and press Run merge (EMR + TADrop is a good start).")

st.subheader("Sweeps")
sweep_tab, grid_tab = st.tabs(
    ["Accuracy vs sparsity (Fig. 1 left)", "(a, b) sensitivity (Table 7)"]
)
with sweep_tab:
    st.caption(
        f"Merges with {method} at each sparsity: DARE drops p, magnitude keeps 1 − sparsity, "
        "TADrop moves a (b fixed). The score is the mean normalized accuracy, or the mean "
        "data-free cosine to each task vector without evaluation data."
    )
    sweep_sparsifiers = st.multiselect(
        "Sparsifiers",
        ["tadrop", "dare", "magnitude"],
        default=["tadrop", "dare"],
        key="sweep_sparsifiers",
    )
    levels = st.text_input("DARE / magnitude sparsities", "0.1, 0.5, 0.9", key="sweep_levels")
    tadrop_as = st.text_input("TADrop a values", "0.3, 0.5, 0.7", key="sweep_as")
    if st.button("Run sweep", key="sweep_run"):
        points = widgets.run_cancellable(
            lambda progress: sweeps.sweep(
                family,
                source,
                method=method,
                method_params=method_params,
                sparsifiers=sweep_sparsifiers,
                levels=sweeps.parse_numbers(levels),
                tadrop_as=sweeps.parse_numbers(tadrop_as),
                b=b,
                eps=eps,
                evaluator=state.evaluator(source) if evaluate else None,
                device=state.device(),
                progress=progress,
            ),
            key="sweep_cancel",
            label="Sweeping…",
            what="Sweep",
        )
        if points is not None:
            st.session_state["sweep_points"] = points
    st.plotly_chart(
        figures.sparsity_sweep(st.session_state.get("sweep_points", sweeps.empty_sweep())),
        key="sweep_figure",
    )
with grid_tab:
    grid_as = st.text_input("a values", "0.3, 0.5, 0.7", key="grid_as")
    grid_bs = st.text_input("b values", "0.9, 0.95, 0.99", key="grid_bs")
    if st.button("Run grid", key="grid_run"):
        grid = widgets.run_cancellable(
            lambda progress: sweeps.sensitivity_grid(
                family,
                source,
                method=method,
                method_params=method_params,
                a_values=sweeps.parse_numbers(grid_as),
                b_values=sweeps.parse_numbers(grid_bs),
                eps=eps,
                evaluator=state.evaluator(source) if evaluate else None,
                device=state.device(),
                progress=progress,
            ),
            key="grid_cancel",
            label="Grid…",
            what="Grid",
        )
        if grid is not None:
            st.session_state["grid_points"] = grid
    grid = st.session_state.get("grid_points", sweeps.empty_grid())
    st.plotly_chart(figures.sensitivity_heatmap(grid), key="grid_figure")
    if not grid.empty:
        st.dataframe(grid, hide_index=True, key="grid_table")
