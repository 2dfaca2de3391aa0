"""Rendering: results → page views → HTML site, PDF and JSON export."""
