"""What one `sayso doctor` check found: a status, a line of detail, and the fix when it is not OK."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    """OK, WARN (works, but not as well as it could) or FAIL (the appliance cannot do this)."""
    detail: str
    fix: str = ""
