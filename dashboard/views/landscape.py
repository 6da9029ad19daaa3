"""Sparsity landscape (the paper's Fig. 5-7): TADrop's drop rates for any (a, b, eps), redrawn
from the precomputed quantile sketches without reading a tensor again."""

import time

import streamlit as st

from dashboard import figures, state, widgets
from tadrop.stats import overall_sparsity

st.title("Sparsity landscape")
source, family = widgets.require_family()
stats = widgets.require_statistics(source, family)
st.markdown(
    "TADrop drops, in each tensor, the fraction **d = Q_a(|τ|) / (Q_b(|τ|) + ε)** of entries "
    "with the smallest |τ|. Move the quantiles and watch where the sparsity goes."
)
a, b, eps = widgets.quantile_controls()

started = time.perf_counter()
rates = state.drop_rates(source.key, state.device(), a, b, eps, family)
sparsity = overall_sparsity(stats, rates["drop_rate"])
computed = time.perf_counter()
heatmap = figures.drop_rate_heatmap(rates)
by_kind = figures.drop_rate_by_kind_layer(rates)
contrast = figures.uniform_rate_contrast(rates, sparsity.to_dict())
drawn = time.perf_counter()

st.markdown("**Overall sparsity** (fraction of each task vector's entries TADrop drops)")
columns = st.columns(len(sparsity) + 1)
columns[0].metric("All tasks", f"{sparsity.mean():.1%}")
for column, (task, value) in zip(columns[1:], sparsity.items(), strict=True):
    column.metric(f"{task}", f"{value:.1%}")
st.caption(
    f"Drop rates of {len(rates)} task × tensor pairs computed from the quantile sketches in "
    f"{(computed - started) * 1000:.0f} ms (no tensor read); figures built in "
    f"{(drawn - computed) * 1000:.0f} ms."
)

st.plotly_chart(heatmap, key="landscape_heatmap")
kind_column, contrast_column = st.columns(2)
kind_column.plotly_chart(by_kind, key="landscape_by_kind")
contrast_column.plotly_chart(contrast, key="landscape_contrast")

st.subheader("Drop rate per tensor")
table = rates.pivot_table(index="tensor", columns="task", values="drop_rate", sort=False)
st.dataframe(
    table,
    column_config={
        task: st.column_config.ProgressColumn(task, min_value=0.0, max_value=1.0, format="%.3f")
        for task in table.columns
    },
    key="landscape_table",
)
