"""Tierplan's planning core: pure Python, no UI. The app and the CLI use only what is exported here."""
