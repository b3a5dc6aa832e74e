"""Reporting a mapping to a person: audit findings as data, and the self-contained HTML review page."""
