"""Read models over the store, shared by the CLI and the exporter: KPI reports, the window rule."""
