"""Dagster wiring: the code location, jobs, sensors, schedules and resources."""
