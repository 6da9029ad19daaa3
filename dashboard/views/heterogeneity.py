"""Heterogeneity (the paper's Fig. 3): how task-vector statistics vary over tasks, layers and
module types, and one tensor's |τ| distribution with TADrop's quantiles marked."""

from dataclasses import astuple

import streamlit as st

from dashboard import figures, state, widgets

st.title("Heterogeneity of task vectors")
source, family = widgets.require_family()
stats = widgets.require_statistics(source, family)
a, b, eps = state.quantile_settings()
stats["drop_rate"] = state.drop_rates(source.key, state.device(), a, b, eps, family)["drop_rate"]
st.caption(
    f"{source.label}: {stats['task'].nunique()} tasks × {stats['tensor'].nunique()} tensors. "
    f"Quantile ratio at a = {a:g}, b = {b:g} (set them on Sparsity landscape)."
)

statistic_column, kind_column, param_column = st.columns([1, 2, 1])
statistic = statistic_column.selectbox(
    "Statistic",
    ["std", "mean_abs", "kurtosis", "drop_rate", "l2", "max_abs", "zero_frac"],
    format_func=figures.statistic_label,
    key="het_statistic",
)
all_kinds = sorted(stats["kind"].unique())
kinds = kind_column.multiselect("Component kinds", all_kinds, default=all_kinds, key="het_kinds")
all_params = sorted(stats["param"].unique())
params = param_column.multiselect(
    "Parameters",
    all_params,
    default=["weight"] if "weight" in all_params else all_params,
    key="het_params",
)
selection = stats[stats["kind"].isin(kinds) & stats["param"].isin(params)]
is_fraction = statistic in figures.FRACTION_STATISTICS
unit_scale = st.toggle(
    "0-1 scale",
    value=False,
    key="het_unit_scale",
    disabled=not is_fraction,
    help="Off: colours fit the data (the colour bar says how). On: fixed at 0-1; only for "
    "fractions (quantile ratio, fraction of zeros).",
)
st.plotly_chart(
    figures.statistic_heatmap(selection, statistic, unit_scale=unit_scale and is_fraction),
    key="het_heatmap",
)

groups_tab, layer_tab, projection_tab = st.tabs(
    ["Attention vs MLP", "Module types in a layer", "Up vs down projection"]
)
with groups_tab:
    st.plotly_chart(figures.group_distribution_by_layer(selection, statistic), key="het_groups")
with layer_tab:
    layers = sorted(int(layer) for layer in selection["layer"].dropna().unique())
    if layers:
        layer = st.select_slider("Layer", layers, value=layers[len(layers) // 2], key="het_layer")
        st.plotly_chart(figures.kinds_in_layer(selection, layer, statistic), key="het_kinds_fig")
    else:
        st.info("No tensor with a layer index in this selection.")
with projection_tab:
    st.plotly_chart(figures.up_vs_down(stats, statistic), key="het_projection")

st.subheader("Tensor drill-down")
task_column, tensor_column = st.columns([1, 3])
task = task_column.selectbox("Task", family.task_names, key="het_task")
queries = stats.loc[(stats["kind"] == "attn.q") & (stats["param"] == "weight"), "tensor"]
first_shown = queries.iloc[0] if len(queries) else family.tensor_names[0]  # a typical tensor
tensor = tensor_column.selectbox(
    "Tensor",
    family.tensor_names,
    index=family.tensor_names.index(first_shown),
    key="het_tensor",
)
log_x_column, log_y_column, _ = st.columns([1, 1, 3])
log_x = log_x_column.checkbox("log |τ| axis", value=True, key="het_log_x")
log_y = log_y_column.checkbox("log count axis", value=False, key="het_log_y")

row, cut_of_tensor, histogram = widgets.one_tensor(
    source, family, stats, task, tensor, (a, b, eps), log_x
)
q_a, q_b, drop_rate, threshold = astuple(cut_of_tensor)
figure_column, table_column = st.columns([3, 1])
if histogram is not None:
    figure_column.plotly_chart(
        figures.magnitude_histogram(
            histogram, q_a=q_a, q_b=q_b, threshold=threshold, a=a, b=b, log_x=log_x, log_y=log_y
        ),
        key="het_histogram",
    )
shown = row.drop(columns=["task", "tensor"]).iloc[0]
shown["q_a"], shown["q_b"], shown["drop_rate"] = q_a, q_b, drop_rate
table_column.dataframe(
    shown.map(lambda value: f"{value:.4g}" if isinstance(value, float) else str(value)).rename(
        "value"
    ),
    key="het_tensor_stats",
)
table_column.caption(
    f"TADrop drops {drop_rate:.1%} of this tensor: every |τ| below {threshold:.3g}."
)
