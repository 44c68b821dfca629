"""esper-dashboard: the Plotly Dash viewer of Esper run logs (reads logs only via telemetry_schema)."""
