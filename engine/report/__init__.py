"""The optimization report (document, HTML, PDF, charts) and the exports (CSV, plan, model)."""
