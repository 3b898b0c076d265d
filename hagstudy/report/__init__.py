"""Reporting: statistics, tables, findings, figures and the rendered README. Reads tables, never generates."""
