"""Each CPO's stop record and the supervisors' overview of all CPOs (issue 15 item 4).

selectors: the figures, from the database in a fixed number of queries; periods: the period form;
charts: the inline SVG charts' geometry (pure); views: the pages and the CSV export.
"""
