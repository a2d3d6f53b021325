"""`synmed report`: tables, figures and a Markdown report from a run folder's stage outputs."""
