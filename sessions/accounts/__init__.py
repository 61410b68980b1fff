"""The portal's own accounts: passwords, the second factor, and support admins managing their team.

services.py writes (each change with its audit record, in one transaction), selectors.py reads,
views.py and forms.py are the pages, middleware.py keeps a login that still owes its second factor
(or a new password) away from every other page (signals.py notes what a login owes), lockout.py
slows password guessing, denials.py logs a refused request in one line.
"""
