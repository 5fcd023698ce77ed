"""The dashboard: static pages (plain JS modules, vendored uPlot) served by the API itself."""
