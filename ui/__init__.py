"""The dashboard's presentation layer: Streamlit-free figure builders, tables, KPIs and the HTML report
(``figures``, ``tables``, ``kpis``, ``report``) plus the Streamlit helpers the pages share (``state``,
``widgets``). Nothing here plans: it draws what ``core`` computed.
"""
