"""The employee roster: who is monitored, kept in step with the firm's directory or HR exports.

plan.py compares a source's records with the employees here (upsert by employee number, then e-mail) and
applies the changes; sources.py reads the records (LDAP, an HR export file, the CSV import).
"""
