"""Sparsity landscape (the paper's Fig. 5-7): TADrop's drop rates for any (a, b, eps), redrawn
from the precomputed quantile sketches without reading a tensor again, and where each task's
overall sparsity comes from."""

import time

import streamlit as st

from dashboard import figures, state, widgets
from tadrop.stats import (
    DOMINANT_SHARE,
    NEAR_ZERO_DROP_RATE,
    ZERO_HEAVY_FRACTION,
    SparsityFacts,
    overall_sparsity,
    sparsity_facts,
    tensor_contributions,
)

ONE_TASK = "One task (Fig. 6)"
EVERY_TASK = "All tasks (Fig. 7)"
ALL_TASKS = "All tasks, one panel each"


def dominance_text(facts: SparsityFacts) -> str:
    """The words for a dominant tensor (or its absence), numbers from ``facts``."""
    dominant = facts.dominant
    if dominant is None:
        return (
            f"**No tensor dominates.** None holds {DOMINANT_SHARE:.0%} or more of the entries, so "
            "the overall sparsity mixes many tensors' drop rates."
        )
    rest = 1 - dominant.param_share
    return (
        f"**One tensor dominates.** `{dominant.tensor}` holds {dominant.param_share:.0%} of the "
        f"task vector's entries and drops {dominant.drop_rate:.1%} of them; the other tensors "
        f"drop {dominant.rest_drop_rate:.1%}. The overall {facts.overall:.1%} is "
        f"{dominant.param_share:.0%} × {dominant.drop_rate:.1%} + {rest:.0%} × "
        f"{dominant.rest_drop_rate:.1%}, so it follows that one tensor: each 10 points its d "
        f"moves (as b moves) move the overall sparsity by {dominant.param_share * 10:.1f} points."
    )


def zero_heavy_text(facts: SparsityFacts, a: float) -> str:
    """The words for tensors whose task vector is mostly (near) zeros, numbers from ``facts``."""
    heavy = facts.zero_heavy
    if heavy is None:
        return (
            f"**No tensor is mostly zeros.** None has more than {ZERO_HEAVY_FRACTION:.0%} of τ "
            f"exactly zero, nor d under {NEAR_ZERO_DROP_RATE:g}."
        )
    return (
        f"**{heavy.count} of {facts.tensors} tensors are mostly zeros** ({heavy.exact} with over "
        f"{ZERO_HEAVY_FRACTION:.0%} of τ exactly 0, {heavy.count - heavy.exact} with d under "
        f"{NEAR_ZERO_DROP_RATE:g} otherwise: Q_a below {NEAR_ZERO_DROP_RATE:.0%} of Q_b, most "
        f"entries near zero beside the few the task moved). Together they hold {heavy.param_share:.1%} of the "
        f"entries and drop {heavy.mean_drop_rate:.1%} of them. The biggest is `{heavy.biggest}`: "
        f"{heavy.biggest_zero_frac:.0%} exact zeros, d = {heavy.biggest_drop_rate:.3f}. Once "
        f"more than a fraction a (= {a:g}) of τ is zero, Q_a(|τ|) = 0 and "
        "d = Q_a / (Q_b + ε) = 0: TADrop keeps the whole tensor; near zeros make d small the same "
        "way. Such tensors are embedding rows of tokens the task never saw (left at zero, or "
        "moved a hair by weight decay), or tensors fine-tuning froze."
    )


st.title("Sparsity landscape")
source, family = widgets.require_family()
stats = widgets.require_statistics(source, family)
st.markdown(
    "TADrop drops, in each tensor, the fraction **d = Q_a(|τ|) / (Q_b(|τ|) + ε)** of entries "
    "with the smallest |τ|. Move the quantiles and watch where the sparsity goes."
)
a, b, eps = widgets.quantile_controls()
unit_scale = st.toggle(
    "0-1 scale",
    value=False,
    key="landscape_unit_scale",
    help="Off: colours and rate axes fit the data (the colour bar says how). On: fixed at 0-1.",
)

started = time.perf_counter()
rates = state.drop_rates(source.key, state.device(), a, b, eps, family)
sparsity = overall_sparsity(stats, rates["drop_rate"])
contributions = tensor_contributions(stats, rates["drop_rate"])
computed = time.perf_counter()

st.markdown("**Overall sparsity** (fraction of each task vector's entries TADrop drops)")
columns = st.columns(len(sparsity) + 1)
columns[0].metric("All tasks", f"{sparsity.mean():.1%}")
for column, (task, value) in zip(columns[1:], sparsity.items(), strict=True):
    column.metric(f"{task}", f"{value:.1%}")
timing = st.empty()
drawing_seconds = [0.0]  # time spent building figures, for the caption


def draw(build, key: str) -> None:
    """Build a figure (timed for the caption) and show it."""
    begun = time.perf_counter()
    figure = build()
    drawing_seconds[0] += time.perf_counter() - begun
    st.plotly_chart(figure, key=key)


draw(lambda: figures.drop_rate_heatmap(rates, unit_scale=unit_scale), "landscape_heatmap")
draw(lambda: figures.drop_rate_by_kind_layer(rates, unit_scale=unit_scale), "landscape_by_kind")

st.subheader("Drop rate by component (paper Fig. 6 and 7)")
view_column, task_column = st.columns([2, 3])
components_view = view_column.radio(
    "Show",
    [ONE_TASK, EVERY_TASK],
    horizontal=True,
    key="landscape_components_view",
)
if components_view == ONE_TASK:  # one figure per rerun: the other is not built
    fig6_task = task_column.selectbox("Task", family.task_names, key="landscape_fig6_task")
    draw(
        lambda: figures.component_drop_rates(rates, fig6_task, unit_scale=unit_scale),
        "landscape_fig6",
    )
else:
    draw(
        lambda: figures.component_drop_rates_by_task(rates, unit_scale=unit_scale),
        "landscape_fig7",
    )

st.subheader("TADrop vs one uniform rate of the same overall sparsity")
contrast_choice = st.selectbox(
    "Show", [*family.task_names, ALL_TASKS], key="landscape_contrast_task"
)
contrast_tasks = None if contrast_choice == ALL_TASKS else [contrast_choice]
draw(
    lambda: figures.uniform_rate_contrast(
        rates, sparsity.to_dict(), tasks=contrast_tasks, unit_scale=unit_scale
    ),
    "landscape_contrast",
)

st.subheader("Where the overall sparsity comes from")
task_column, rank_column, top_column = st.columns([2, 2, 1])
contribution_task = task_column.selectbox(
    "Task", family.task_names, key="landscape_contribution_task"
)
ranking = rank_column.radio(
    "Rank tensors by",
    list(figures.CONTRIBUTION_RANKINGS),
    format_func=figures.CONTRIBUTION_RANKINGS.get,
    horizontal=True,
    key="landscape_contribution_rank",
)
top = top_column.number_input("Tensors", 3, 60, 15, key="landscape_contribution_top")
draw(
    lambda: figures.sparsity_contributions(
        contributions, contribution_task, top=int(top), by=ranking
    ),
    "landscape_contributions",
)
facts = sparsity_facts(contributions, contribution_task)
st.markdown(dominance_text(facts))
st.markdown(zero_heavy_text(facts, a))

timing.caption(
    f"Drop rates of {len(rates)} task × tensor pairs computed from the quantile sketches in "
    f"{(computed - started) * 1000:.0f} ms (no tensor read); figures built in "
    f"{drawing_seconds[0] * 1000:.0f} ms."
)

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
