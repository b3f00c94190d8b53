"""Dagster assets. Each stays short; the work is in plain modules (``queue_manager``, ...)."""

import warnings

import dagster as dg

# BackfillPolicy is marked beta in Dagster 1.13; it is the documented way to run a range in one run.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
