"""The evaluation harness: scenarios, planner comparison, report tables and plots."""
