"""Attestations under a code of ethics (SEC Rule 204A-1, 17j-1, FINRA 3210, MiFID II Art. 29).

- periods: the four kinds of campaign, what a period means and when each report is due;
- campaigns: campaigns, the task each access person gets, access persons and their initial-holdings task,
  the code of ethics' versions, closing the tasks of someone who left;
- snapshot: what a task shows (synced records for its period, connected accounts, declared accounts,
  manual entries) and the frozen JSON a certification stores;
- certify: the employee's side (declare, add, certify with a typed name, acknowledge the code);
- review: Compliance's side (open a submission for review, approve or return, the late list);
- reminders and differences: the scheduled e-mails, and records found after a certification.

Task statuses stored: open | submitted | approved | returned | closed; ``late`` is derived (open or
returned past the due date), so a task is never "late" in one place and "open" in another.
"""
