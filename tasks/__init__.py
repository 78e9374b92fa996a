"""Example task modules: ``--app tasks`` loads every module in this package."""
