"""Deadline kinds: the second item of a heap entry ``(due, kind, key)``.

The number also orders deadlines falling due at the same instant (then the key does), so ties resolve the same
way in replay, live, and after a heap rebuilt from state. Kept apart from the engine so that the state classes,
which list their own armed deadlines, need nothing from it.
"""

from __future__ import annotations

# key: the customer id, except K_BREACH (call id), K_KPI ((queue, window start)), K_APPOINTMENT ((customer id,
# appointment id)). Keys are compared only between entries of the same kind.
K_ALERT, K_LATE, K_OUTAGE, K_BREACH, K_KPI, K_REPAIR, K_PROVISION, K_APPOINTMENT = range(8)
K_RISK = 8  # SPEC section 10's outage_at_risk (appended: the numbers of the kinds above are unchanged)
