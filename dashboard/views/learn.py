"""Learn: task vectors, TADrop's formula and what each page shows, with this family's numbers."""

from dataclasses import astuple

import streamlit as st

from dashboard import figures, widgets
from tadrop.stats import overall_sparsity

st.title("Learn: task vectors and TADrop")
source, family = widgets.require_family()
stats = widgets.require_statistics(source, family)

tasks = family.task_names
sparsity = overall_sparsity(stats, stats["drop_rate"])
weights = stats[stats["param"] == "weight"] if (stats["param"] == "weight").any() else stats
sparsest = weights.loc[weights["drop_rate"].idxmax()]
densest = weights.loc[weights["drop_rate"].idxmin()]

st.header("1. A task vector")
st.markdown(
    "Fine-tuning moves a pretrained model θ_pre to θ_k for task k. The **task vector** is the move:"
)
st.latex(r"\tau_k = \theta_k - \theta_{\mathrm{pre}}")
st.markdown(
    f"""
The loaded family, {source.label}, has **{len(tasks)} tasks** ({", ".join(tasks)}), so {len(tasks)}
task vectors of **{family.total_params:,} numbers** each, spread over
**{len(family.tensor_names)} tensors**. Merging adds (some combination of) the task vectors to
θ_pre to get one model for every task; the vectors interfere where they disagree.
"""
)

st.header("2. Not every tensor is alike")
st.markdown(
    f"""
The **Heterogeneity** page maps statistics of τ over tasks and layers. Here the spread of the
weights' std goes from {weights["std"].min():.2e} to {weights["std"].max():.2e}: a single global
rule for what counts as a "small" entry treats these tensors very differently.
"""
)

st.header("3. TADrop's formula")
st.latex(r"d = \frac{Q_a(|\tau|)}{Q_b(|\tau|) + \varepsilon}, \qquad a = 0.5,\ b = 0.95")
st.markdown(
    f"""
Per tensor, Q_a and Q_b are quantiles of |τ|. When most entries are about as large as the big
ones (a flat distribution, Q_a close to Q_b), d is large: many entries are redundant and are
dropped. When a few entries carry the tensor (a heavy tail, Q_a ≪ Q_b), d is small and the
tensor is kept. TADrop drops the fraction d of entries with the smallest |τ| and rescales the
rest so the tensor keeps its L2 norm.

In this family:
- **{sparsest["tensor"]}** ({sparsest["task"]}): Q_0.5 = {sparsest["q_a"]:.3g},
  Q_0.95 = {sparsest["q_b"]:.3g}, so d = {sparsest["drop_rate"]:.1%} is dropped;
- **{densest["tensor"]}** ({densest["task"]}): Q_0.5 = {densest["q_a"]:.3g},
  Q_0.95 = {densest["q_b"]:.3g}, so only d = {densest["drop_rate"]:.1%} is dropped;
- overall, TADrop drops {sparsity.mean():.1%} of every task vector's entries
  ({", ".join(f"{task} {value:.1%}" for task, value in sparsity.items())}).
"""
)

st.header("4. Watch the cut move")
st.markdown(
    "The histogram below is one tensor's |τ|. Move **a** and **b**: Q_a (green) and Q_b (red) "
    "slide along the distribution, their ratio is d, and TADrop drops every entry left of the "
    "black cut, the d-quantile of |τ|. Bring a close to b and d approaches 1; lower a and d "
    "falls. The sliders are the ones of Sparsity landscape: they set (a, b) for every page."
)
a, b, eps = widgets.quantile_controls()
task_column, tensor_column, log_column = st.columns([1, 3, 1])
task = task_column.selectbox("Task", tasks, index=tasks.index(sparsest["task"]), key="learn_task")
tensor = tensor_column.selectbox(
    "Tensor",
    family.tensor_names,
    index=family.tensor_names.index(sparsest["tensor"]),
    key="learn_tensor",
)
log_x = log_column.checkbox("log |τ| axis", value=False, key="learn_log_x")
_, cut_of_tensor, histogram = widgets.one_tensor(
    source, family, stats, task, tensor, (a, b, eps), log_x
)
q_a, q_b, drop_rate, cut = astuple(cut_of_tensor)
if histogram is not None:
    st.plotly_chart(
        figures.magnitude_histogram(
            histogram, q_a=q_a, q_b=q_b, threshold=cut, a=a, b=b, log_x=log_x
        ),
        key="learn_histogram",
    )
st.markdown(
    f"Here Q_{a:g} = {q_a:.3g} and Q_{b:g} = {q_b:.3g}, so d = {q_a:.3g} / ({q_b:.3g} + ε) = "
    f"**{drop_rate:.1%}**: TADrop drops every |τ| below **{cut:.3g}** in this tensor and "
    "rescales the rest to keep its L2 norm."
)

st.header("5. What the pages show")
st.markdown(
    """
- **Heterogeneity** (the paper's Fig. 3): a statistic over task × layer, attention vs MLP,
  module types within a layer, up vs down projection, and one tensor's |τ| histogram with
  Q_a, Q_b and the drop threshold.
- **Sparsity landscape** (Fig. 5-7): the drop rate d of every tensor for the (a, b) you pick,
  by component and layer, against one uniform rate with the same overall sparsity.
- **Merge & evaluate** (Fig. 1, Table 7): merge with or without TADrop and compare per task;
  sweep sparsity and the (a, b) grid.
- **Export**: the merged model, the statistics table, the figures and the run's YAML config.
"""
)
