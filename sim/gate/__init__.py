"""The label-quality gate: a run's stance and judge readers scored on external ground truth before its first step."""
