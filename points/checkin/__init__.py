"""Daily check-in (issue 17 item 3): once per member per local day, a reward that grows
with the streak. The same small set of files as its parent: model.py (values and the streak
rule), checkins.py (the use cases), store.py (SQL). README.md, "Daily check-in"."""

from points.checkin.checkins import CheckIns
from points.checkin.model import CheckedIn, CheckIn, CheckInStatus

__all__ = ["CheckIn", "CheckInStatus", "CheckIns", "CheckedIn"]
