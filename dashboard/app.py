"""The tadrop dashboard: the page list. Run ``streamlit run dashboard/app.py`` (or
``tadrop dashboard``); arguments after ``--`` go to the app, e.g. ``-- --data-root DIR``."""

import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:  # streamlit runs this file as a script: make `dashboard` importable
    sys.path.insert(0, _REPO_ROOT)

import streamlit as st  # noqa: E402

from dashboard import state  # noqa: E402

st.set_page_config(page_title="tadrop", page_icon=":material/target:", layout="wide")
state.init_session()
page = st.navigation(
    [
        st.Page("views/models.py", title="Models", icon=":material/inventory_2:", default=True),
        st.Page("views/heterogeneity.py", title="Heterogeneity", icon=":material/thermostat:"),
        st.Page("views/landscape.py", title="Sparsity landscape", icon=":material/map:"),
        st.Page("views/merge.py", title="Merge & evaluate", icon=":material/merge_type:"),
        st.Page("views/export.py", title="Export", icon=":material/download:"),
        st.Page("views/learn.py", title="Learn", icon=":material/school:"),
    ]
)
page.run()
