"""HTML reports: escaped building blocks shared by every report, and the sanitiser for third-party report HTML.
Plain Python.
"""
