"""Indicator lifecycle: expiry, revocation and the polynomial decay score of MISP and OpenCTI.

The score of an indicator at a time is, as MISP's Polynomial decaying model and OpenCTI's
decay rules compute it (Iklody et al., "Decaying Indicators of Compromise", 2018):

    score(t) = base_score * (1 - (t / tau) ** (1 / delta))      for 0 <= t < tau, else 0

where `t` is the time since the indicator was last known to be active, `tau` the lifetime of
its type and `delta` the decay speed (1: linear; above 1: falls fast, then slowly; below 1:
holds, then falls fast). `base_score` is the source's confidence (0-100), or
`DEFAULT_BASE_SCORE` when the source gives none. An indicator whose score falls below the
model's threshold has decayed and stops matching, as do revoked indicators and those past
their `valid_until`.

"Last known to be active" is the latest of: when it was first imported, the source's
`first_seen` / `last_seen`, and the last sighting in Vigil's own logs. A sighting so raises
the score back to its base, as in MISP; a time in the future counts as now (MISP gives such
indicators 0; a source's clock running ahead should not switch an indicator off).
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86400.0
DEFAULT_BASE_SCORE = 50.0


@dataclass(frozen=True, slots=True)
class DecayModel:
    """`lifetime_days` is tau, `speed` is delta (MISP) or the decay pound (OpenCTI),
    `threshold` the score under which the indicator has decayed."""

    lifetime_days: float
    speed: float = 1.0
    threshold: float = 20.0

    def score(self, base: float, elapsed_seconds: float) -> float:
        tau = self.lifetime_days * DAY
        elapsed = max(0.0, elapsed_seconds)
        if elapsed >= tau:
            return 0.0
        return float(base * (1.0 - (elapsed / tau) ** (1.0 / self.speed)))


# Per indicator type, as OpenCTI's default decay rules and MISP's NIDS model set them: an
# address is reassigned within weeks, a domain or URL lasts months, a file hash does not
# change meaning.
DEFAULT_MODELS: dict[str, DecayModel] = {
    "ipv4": DecayModel(60),
    "ipv6": DecayModel(60),
    "cidr": DecayModel(60),
    "ip-port": DecayModel(60),
    "url": DecayModel(180),
    "domain": DecayModel(180),
    "email": DecayModel(180),
    "md5": DecayModel(365),
    "sha1": DecayModel(365),
    "sha256": DecayModel(365),
    "sha512": DecayModel(365),
    "filename": DecayModel(365),
    "ja3": DecayModel(365),
}
FALLBACK_MODEL = DecayModel(365)


def model_for(kind: str, models: dict[str, DecayModel] | None = None) -> DecayModel:
    return (models or DEFAULT_MODELS).get(kind, FALLBACK_MODEL)


def active_since(*times: float | None) -> float | None:
    """When the indicator was last known to be active: the latest of the times given."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


def current_score(
    kind: str,
    confidence: int | float | None,
    since: float | None,
    now: float,
    models: dict[str, DecayModel] | None = None,
) -> float:
    base = DEFAULT_BASE_SCORE if confidence is None else float(confidence)
    if since is None:
        return base
    return model_for(kind, models).score(base, now - since)


def is_live(
    kind: str,
    *,
    confidence: int | float | None,
    since: float | None,
    valid_until: float | None,
    revoked: bool,
    now: float,
    models: dict[str, DecayModel] | None = None,
) -> bool:
    """Whether the indicator matches now: not revoked, not expired, not decayed."""
    if revoked or (valid_until is not None and valid_until <= now):
        return False
    model = model_for(kind, models)
    return current_score(kind, confidence, since, now, models) >= model.threshold
