"""The pseudonymous youth_id: a keyed hash of the normalised INE, stable across campaigns."""

from __future__ import annotations

import hashlib
import hmac


def youth_id(normalised_ine: str, key: bytes) -> str:
    """HMAC-SHA256(key, INE) in hex. Without the key it reveals nothing; with it, the same INE
    always gives the same id, so a youth keeps it from one campaign to the next."""
    return hmac.new(key, normalised_ine.encode("ascii"), hashlib.sha256).hexdigest()
