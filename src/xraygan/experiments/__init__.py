"""The classifier experiment of issue 5: folds, controls, statistics, verdicts (see runner.py)."""
