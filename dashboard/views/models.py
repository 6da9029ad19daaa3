"""Models: the demo zoo or your own base + K fine-tuned checkpoints, and what was loaded."""

import pandas as pd
import streamlit as st

from dashboard import demo, paths, state, uploads, widgets

st.title("Models")
roots = state.data_roots()
st.caption("Data root: " + ", ".join(f"`{root}`" for root in roots))

shown_source = state.chosen_source()
choice = st.radio(
    "Model family",
    ["Demo zoo", "My checkpoints"],
    index=0 if shown_source is None or demo.demo_choice_of(shown_source) else 1,
    horizontal=True,
    key="models_choice",
)
DEVICES = ["auto", "cpu", "cuda"]
st.session_state["device"] = st.selectbox(
    "Device",
    DEVICES,
    index=DEVICES.index(state.device()),
    key="models_device",
    help="auto: CUDA when available, else CPU",
)


def demo_section() -> None:
    current = state.chosen_source()
    families = list(demo.DEMO_FAMILIES)
    which = st.radio(
        "Demo family",
        families,
        index=families.index(demo.demo_choice_of(current) or demo.DEMO_ZOO),
        format_func=demo.DEMO_FAMILIES.get,
        key="models_demo_family",
        help="The zoos are fine-tuned models with test data; the synthetic family is "
        "generated task vectors (one distribution per component) for seeing how TADrop reacts",
    )
    source = demo.demo_source(which=which)
    if source is None:
        st.info(
            f"The {which} demo family is not built yet. Building it fine-tunes a small model on "
            "a few tasks from installed data (the synthetic family is generated in seconds) "
            f"and writes it to `{demo.demo_home()}`: a few minutes, once. Leaving the page "
            "pauses it; building again resumes."
        )
        first_visit = current is None and "demo_build_tried" not in st.session_state
        if first_visit or st.button(f"Build the {which} demo", type="primary", key="models_build"):
            st.session_state["demo_build_tried"] = True
            bar = st.progress(0.0, text="Building the demo…")
            built = widgets.call_or_error(
                lambda: demo.build_demo(lambda done, text: bar.progress(done, text=text), which),
                what="Building the demo",
            )
            bar.empty()
            if built is not None:
                state.choose_source(built)
                st.rerun()
        return
    same = demo.demo_choice_of(current) == which
    tasks = st.multiselect(
        "Tasks to merge",
        source.task_names,
        default=current.task_names if same else source.task_names,
        key="models_demo_tasks" if which == demo.DEMO_ZOO else f"models_demo_tasks_{which}",
        help="Fewer tasks: faster merges and evaluations",
    )
    chosen = widgets.call_or_error(lambda: demo.demo_source(tasks, which), what="Tasks")
    if chosen is not None and chosen != current:
        state.choose_source(chosen)


def own_section() -> None:
    upload_section()
    include_merged = st.checkbox(
        "Also offer merged outputs",
        key="models_include_merged",
        help="Folders written by tadrop merge or Export, labelled [merged]. Head-only files "
        "(such as the demo zoo's heads/) are never offered: they are not models.",
    )
    candidates = state.checkpoint_candidates(roots, include_merged)
    shown = {str(path): paths.checkpoint_label(path, roots) for path in candidates}
    with st.form("models_own"):
        base = st.selectbox("Base checkpoint", list(shown), format_func=shown.get, index=None)
        finetuned = st.multiselect(
            "Fine-tuned checkpoints (one per task)", list(shown), format_func=shown.get
        )
        typed = st.text_area(
            "…or type paths under the data root, one per line: the base first, then each "
            "fine-tuned checkpoint",
            key="models_typed",
        )
        include_column, exclude_column, keys_column = st.columns([2, 2, 1])
        include = include_column.text_input("Include tensors (regex)", key="models_include")
        exclude = exclude_column.text_input("Exclude tensors (regex)", key="models_exclude")
        keys = keys_column.selectbox(
            "Key matching",
            ["strict", "common"],
            key="models_keys",
            help="common: merge only tensors every checkpoint has, list the rest as skipped",
        )
        align_prefixes = st.checkbox(
            "Match keys that differ by a prefix such as `model.`", key="models_align"
        )
        submitted = st.form_submit_button("Load", type="primary")
    if not submitted:
        return
    lines = [line for line in typed.splitlines() if line.strip()]
    chosen = lines if lines else ([base] if base else []) + list(finetuned)
    if len(chosen) < 2:
        st.error("Choose a base checkpoint and at least one fine-tuned checkpoint.")
        return
    resolved = widgets.call_or_error(
        lambda: [str(paths.resolve_user_path(text, roots)) for text in chosen], what="Path"
    )
    if resolved is None:
        return
    source = state.FamilySource(
        label="your checkpoints",
        base=resolved[0],
        finetuned=tuple(resolved[1:]),
        include=include,
        exclude=exclude,
        keys=keys,
        align_prefixes=align_prefixes,
        data_roots=tuple(str(root) for root in roots),
    )
    if widgets.call_or_error(lambda: state.family(source), what="Loading") is not None:
        state.choose_source(source)
        st.success("Loaded. The other pages now show these checkpoints.")


def upload_section() -> None:
    server_limit = int(st.get_option("server.maxUploadSize")) * 2**20
    limit = min(paths.upload_limit_bytes(), server_limit)
    folder = roots[0] / uploads.UPLOAD_FOLDER
    with st.expander(f"Upload safetensors files (up to {limit / 2**20:.0f} MB each)"):
        files = st.file_uploader(
            "Files are saved under the data root in `uploads/`",
            type=["safetensors"],
            accept_multiple_files=True,
            key="models_uploads",
        )
        saved_ids = st.session_state.setdefault("models_saved_uploads", {})
        for uploaded in files or []:
            if uploaded.file_id not in saved_ids:
                saved = widgets.call_or_error(
                    lambda file=uploaded: uploads.save_upload(
                        file.name, file.getvalue(), folder, limit_bytes=limit, roots=roots
                    ),
                    what="Upload",
                )
                if saved is None:
                    continue
                message = f"Saved `{paths.display_path(saved, roots)}`."
                if saved.name != paths.safe_file_name(uploaded.name, suffix=uploads.SUFFIX):
                    message += " A file of that name was already there; it is kept as it was."
                saved_ids[uploaded.file_id] = message
            st.success(saved_ids[uploaded.file_id])


if choice == "Demo zoo":
    demo_section()
else:
    own_section()

st.divider()
source = state.chosen_source()
if source is None:
    st.stop()
family = widgets.call_or_error(lambda: state.family(source), what=f"Opening {source.label}")
if family is None:
    st.stop()
summary = family.summary()
st.subheader(f"Loaded: {source.label}")
tasks_column, tensors_column, params_column, dtypes_column = st.columns(4)
tasks_column.metric("Tasks", len(summary["tasks"]))
tensors_column.metric("Tensors merged", summary["tensors"])
params_column.metric("Parameters per task vector", f"{summary['parameters']:,}")
dtypes_column.metric("Dtypes", ", ".join(summary["dtypes"]))
st.dataframe(
    pd.DataFrame(
        {
            "task": family.task_names,
            "checkpoint": [str(checkpoint.source) for checkpoint in family.tasks.values()],
            "format": [checkpoint.format for checkpoint in family.tasks.values()],
        }
    ),
    hide_index=True,
    key="models_tasks",
)
st.caption(f"Base: `{family.base.source}` ({family.base.format})")
skipped = summary["skipped"]
if skipped:
    with st.expander(f"Not merged: {len(skipped)} tensor(s), and why"):
        st.dataframe(
            pd.DataFrame({"tensor": list(skipped), "reason": list(skipped.values())}),
            hide_index=True,
            key="models_skipped",
        )
else:
    st.caption("Every tensor of the base is merged.")
