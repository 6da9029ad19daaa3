"""``python dashboard/serve.py run dashboard/app.py [streamlit options] [-- app arguments]``:
streamlit's own command line, run after importing what every page needs (torch, pandas,
plotly and the tadrop library), so the server answers only once they are loaded and the first
browser session does not wait for them (seconds on a busy 2-core machine; issue 12 §2, time to
the first figure). ``tadrop dashboard`` starts the server this way. A family given on the
command line (``tadrop dashboard --family``) has its statistics computed from here on, in the
background (``dashboard.jobs``), while the server starts and before any browser connects.
Modules with ``st.cache_*`` functions are left to the app: they must be imported with the
runtime running."""

import sys
from collections.abc import Mapping
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


def start_statistics(argv: list[str], environ: Mapping[str, str] | None = None) -> object:
    """Start the statistics job of the command-line family (the app's arguments after
    ``--``, else $TADROP_FAMILY) on the pages' default device; None without one, or when it
    cannot be opened (the page shows why)."""
    from dashboard import jobs
    from dashboard.sources import command_line_family, open_family

    app_arguments = argv[argv.index("--") + 1 :] if "--" in argv else []
    try:
        source = command_line_family(app_arguments, environ)
        if source is None:
            return None
        return jobs.statistics_job(source.key, jobs.DEFAULT_DEVICE, lambda: open_family(source))
    except (ValueError, OSError):
        return None


if __name__ == "__main__":
    start_statistics(sys.argv[1:])
    preload()
    from streamlit.web.cli import main

    sys.exit(main(prog_name="streamlit"))
