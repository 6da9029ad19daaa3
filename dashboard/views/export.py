"""Export: the merged checkpoint, the statistics table, the figures and the run's YAML config,
written under the data root or downloaded."""

import streamlit as st

from dashboard import exports, figures, paths, png, runs, state, widgets
from tadrop.stats import overall_sparsity

st.title("Export")
source, family = widgets.require_family()
stats = widgets.require_statistics(source, family)
roots = state.data_roots()
records = state.runs()
st.caption("Everything is written under the data root: " + ", ".join(f"`{r}`" for r in roots))


def folder_input(label: str, default: str, key: str):
    """A folder under the data root typed by the user, or None after showing why not."""
    text = st.text_input(label, default, key=key)
    return widgets.call_or_error(lambda: paths.output_path(text, roots), what="Folder")


st.header("Merged model")
exportable = [record for record in records if record.result is not None]
if not exportable:
    st.info(
        "Run a merge on Merge & evaluate first; the newest "
        f"{runs.KEEP_MERGED_MODELS} runs keep their merged model for export."
    )
else:
    labels = [record.label for record in exportable]
    label = st.selectbox(
        "Run", labels, index=runs.default_export_index(exportable), key="export_run"
    )
    record = exportable[labels.index(label)]
    default = f"merged/{paths.safe_file_name(label, suffix='')}"
    target = folder_input(
        "Folder (Hugging Face style; EMR: one subfolder per task)", default, "export_dir"
    )
    layout = None
    if record.result.writes_parts:
        layout_label = st.radio(
            "EMR writes", list(exports.PART_LAYOUTS), key="export_layout", horizontal=True
        )
        layout = exports.PART_LAYOUTS[layout_label]
        st.caption(
            "The compact artifact rebuilds any task model bit-exactly: "
            "`tadrop emr expand FOLDER/emr_artifact --task NAME -o OUT`."
        )
    overwrite = st.checkbox("Replace the folder if it exists", key="export_overwrite")
    if target is not None and st.button(
        "Write the merged checkpoint", type="primary", key="export_write"
    ):
        with st.spinner(f"Writing {target}…"), paths.inside_roots(state.readable_roots(source)):
            outcome = widgets.call_or_error(
                lambda: exports.write_merged(
                    record.result, target, overwrite=overwrite, layout=layout
                ),
                what="Writing",
            )
        written, ratio = outcome if outcome is not None else (None, None)
        if ratio is not None:
            st.info(f"The compact artifact is {ratio:.3f} × the size of the full task models.")
        if written is not None:
            files = sorted(
                str(path.relative_to(written)) for path in written.rglob("*") if path.is_file()
            )
            st.success(f"Wrote `{written}` ({len(files)} files, atomically).")
            with st.expander("Files written"):
                st.code("\n".join(files), language=None)

st.header("Statistics table")
csv_column, parquet_column = st.columns(2)
csv_column.download_button(
    "Download CSV (no sketches)",
    state.statistics_file(source.key, state.device(), ".csv", family),
    file_name="tadrop_stats.csv",
    mime="text/csv",
    key="export_stats_csv",
)
parquet_column.download_button(
    "Download parquet (with quantile sketches)",
    state.statistics_file(source.key, state.device(), ".parquet", family),
    file_name="tadrop_stats.parquet",
    key="export_stats_parquet",
)

st.header("Figures")
renderer_problem = png.png_renderer_problem()
if renderer_problem:
    st.warning(f"PNG export is off ({renderer_problem}); figures are exported as HTML only.")
else:
    st.caption("HTML (opens offline) and PNG (rendered by the local Chromium).")
a, b, eps = state.quantile_settings()
rates = state.drop_rates(source.key, state.device(), a, b, eps, family)
figure_set = figures.all_figures(
    stats,
    rates,
    overall_sparsity(stats, rates["drop_rate"]).to_dict(),
    results=runs.results_table(records),
    sweep=st.session_state.get("sweep_points"),
    grid=st.session_state.get("grid_points"),
)
st.write(", ".join(f"`{name}`" for name in figure_set))
figures_folder = folder_input("Folder for the figure files", "figures", "export_figures_dir")
if st.button("Prepare the figure files", key="export_figures"):
    with st.spinner("Rendering figures…"):
        files = widgets.call_or_error(
            lambda: exports.figure_files(figure_set, png=renderer_problem is None), what="Figures"
        )
    if files is not None:
        st.session_state["export_figure_zip"] = exports.zip_bytes(files)
        if figures_folder is not None:
            written = widgets.call_or_error(
                lambda: exports.write_files(files, figures_folder), what="Writing figures"
            )
            if written:
                st.success(f"Wrote {len(written)} files to `{figures_folder}`.")
if "export_figure_zip" in st.session_state:
    st.download_button(
        "Download the figures (zip)",
        st.session_state["export_figure_zip"],
        file_name="tadrop_figures.zip",
        mime="application/zip",
        key="export_figures_zip",
    )

st.header("Run config (YAML)")
family_records = [record for record in records if record.family_key == source.key]
if not family_records:
    st.info("Run a merge first; its config reproduces it with `tadrop merge CONFIG`.")
else:
    labels = [record.label for record in family_records]
    label = st.selectbox(
        "Run", labels, index=runs.default_export_index(family_records), key="export_config_run"
    )
    record = family_records[labels.index(label)]
    output = widgets.call_or_error(
        lambda: paths.output_path(f"merged/{paths.safe_file_name(label, suffix='')}", roots),
        what="Output folder",
    )
    task_paths = {task: str(checkpoint.source) for task, checkpoint in family.tasks.items()}
    config = widgets.call_or_error(
        lambda: exports.run_config(record, source, task_paths, output=output, folder=roots[0]),
        what="Config",
    )
    if config is not None:
        text = exports.config_yaml(config)
        st.code(text, language="yaml")
        st.download_button(
            "Download the YAML", text, file_name="tadrop_run.yaml", key="export_config_yaml"
        )
        st.caption(
            "Reproduce with `tadrop merge tadrop_run.yaml` (and `tadrop eval tadrop_run.yaml`)."
        )
