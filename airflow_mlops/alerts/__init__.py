"""Alerts: one alert type, its routing (e-mail, webhook), once-per-window delivery records in the store. Plain
Python.
"""
