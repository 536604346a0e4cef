"""Tierplan dashboard: ``streamlit run app.py``.

The entry point draws the shared sidebar (model, hardware, policy) and hands over to the page chosen in the
top navigation. Pages live in ``pages/`` and stay thin: read widgets, call ``core``, draw ``ui.figures``.
"""

from __future__ import annotations

import logging

import streamlit as st

from ui import state, view, widgets

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

st.set_page_config(page_title="Tierplan", page_icon=":material/memory:", layout="wide",
                   initial_sidebar_state="expanded")
view.mark_app_run()
state.keep_widget_state()
view.style()

PAGES = [
    st.Page("pages/plan.py", title="Plan", icon=":material/timeline:", url_path="plan", default=True),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page("pages/whatif.py", title="What-if", icon=":material/tune:", url_path="whatif"),
    st.Page("pages/model.py", title="Model", icon=":material/account_tree:", url_path="model"),
    st.Page("pages/serve.py", title="Serve", icon=":material/dns:", url_path="serve"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:", url_path="learn"),
]
page = st.navigation(PAGES, position="top")

with st.sidebar:
    st.markdown("### :material/memory: Tierplan")
    st.caption("Where should each tensor live — HBM, host DDR, SSD or pooled memory — so the step stays fast?")

if page.url_path != "learn":
    result = state.guarded(widgets.sidebar_inputs, what="Inputs")
    if result is not None:
        _, problems = result
        for problem in problems:
            st.error(problem, icon=":material/error:")
        if problems and state.current_inputs() is not None:
            st.caption("The charts below use the last inputs that worked.")
else:
    with st.sidebar:
        st.info("The Learn page uses its own tiny teaching model and the sliders on the page.",
                icon=":material/school:")

with st.sidebar:
    st.subheader("Display", divider="gray")
    if view.FORMAT_KEY not in st.session_state:
        st.session_state[view.FORMAT_KEY] = "png"
    st.segmented_control("Chart downloads (camera button)", ["png", "svg"], key=view.FORMAT_KEY,
                         help="Every chart's camera button saves the chart with its title, as PNG or SVG.")

page.run()
