"""``python dashboard/serve.py run dashboard/app.py [streamlit options] [-- app arguments]``:
streamlit's own command line, run after importing what every page needs (torch, pandas,
plotly and the tadrop library), so the server answers only once they are loaded and the first
browser session does not wait for them (seconds on a busy 2-core machine; issue 12 §2, time to
the first figure). ``tadrop dashboard`` starts the server this way. Modules with ``st.cache_*``
functions are left to the app: they must be imported with the runtime running."""

import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:  # run as a script: make `dashboard` and `tadrop` importable
    sys.path.insert(0, _REPO_ROOT)


def preload() -> None:
    """Import the pages' heavy dependencies (no streamlit caches are created here)."""
    import dashboard.figures  # noqa: F401  (tadrop.figures, plotly, pandas)
    import tadrop.registry  # noqa: F401  (every merge method and sparsifier)
    import tadrop.stats  # noqa: F401  (torch, numpy, the statistics engine)
    import tadrop.task_vectors  # noqa: F401


if __name__ == "__main__":
    preload()
    from streamlit.web.cli import main

    sys.exit(main(prog_name="streamlit"))
