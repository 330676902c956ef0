"""Traffic policies: which arm of a scene answers a request.

    traffic:
      key: user_id                   # request field hashed for sticky assignment
      split: {control: 90, b: 10}    # A/B weights (any positive numbers)
      arms:                          # every arm but 'control' changes the control flow:
        b: {models: {credit_gbm: "7"}}       # pin other model refs, and/or
        c: {flow: [...]}                     # replace the whole flow
      whitelist:                     # gray release: listed keys always get an arm
        - {field: user_id, values: ["u1", "u2"], arm: b}
      canary: {arm: b, percent: 5}   # a share of traffic (progressive delivery moves it)
      shadow: {arm: c, sample: 1.0}  # mirrored off the request path; never answers
      override: true                 # allow the X-Shipyard-Arm header (testing)

Order: override header, whitelist, canary, split, else ``control``. Assignment hashes
``scene:salt:key`` with BLAKE2b, so a key keeps its arm for as long as the weights stay put, and
canary and split use different salts so they are independent. A request without the key is
assigned at random.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import InvalidInput

CONTROL = "control"
ARM_HEADER = "x-shipyard-arm"
TRAFFIC_KEYS = ("key", "split", "arms", "whitelist", "canary", "shadow", "override")


def bucket(key: Any, salt: str) -> float:
    """A stable number in [0, 1) for ``key``."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass
class TrafficPolicy:
    scene: str
    key: str | None = None
    split: list[tuple[str, float]] = field(default_factory=list)  # cumulative upper bounds
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    whitelist: list[tuple[str, frozenset[Any], str]] = field(default_factory=list)
    canary_arm: str | None = None
    canary_percent: float = 0.0
    shadow_arm: str | None = None
    shadow_sample: float = 1.0
    override: bool = True

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None, scene: str) -> TrafficPolicy:
        if not spec:
            return cls(scene)
        if not isinstance(spec, Mapping):
            raise InvalidInput("'traffic' must be a mapping", {"field": "traffic"})
        unknown = sorted(set(spec) - set(TRAFFIC_KEYS))
        if unknown:
            raise InvalidInput(f"unknown traffic key(s) {unknown}; allowed: {', '.join(TRAFFIC_KEYS)}",
                               {"field": f"traffic.{unknown[0]}"})
        arms = {str(k): dict(v or {}) for k, v in (spec.get("arms") or {}).items()}
        if CONTROL in arms:
            raise InvalidInput("'control' is the scene's own flow; do not redefine it under traffic.arms",
                               {"field": "traffic.arms.control"})
        for name, arm in arms.items():
            extra = sorted(set(arm) - {"models", "flow"})
            if extra:
                raise InvalidInput(f"arm {name!r} has unknown key(s) {extra}; use 'models' and/or 'flow'",
                                   {"field": f"traffic.arms.{name}"})
        known = {CONTROL, *arms}

        def need(arm: Any, where: str) -> str:
            if arm not in known:
                raise InvalidInput(f"{where} names arm {arm!r}, which is not defined; define it under "
                                   f"traffic.arms (known: {sorted(known)})", {"field": where})
            return str(arm)

        policy = cls(scene, key=spec.get("key"), arms=arms, override=bool(spec.get("override", True)))
        split = spec.get("split") or {}
        if split:
            total = 0.0
            weights: list[tuple[str, float]] = []
            for arm, weight in split.items():
                if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                    raise InvalidInput(f"traffic.split weight of {arm!r} must be a non-negative number",
                                       {"field": "traffic.split"})
                weights.append((need(arm, "traffic.split"), float(weight)))
                total += float(weight)
            if total <= 0:
                raise InvalidInput("traffic.split weights must add up to more than 0", {"field": "traffic.split"})
            running = 0.0
            for arm_name, share in weights:
                running += share / total
                policy.split.append((arm_name, running))
        for i, rule in enumerate(spec.get("whitelist") or []):
            if not isinstance(rule, Mapping) or not {"field", "values", "arm"} <= set(rule):
                raise InvalidInput(f"traffic.whitelist[{i}] needs field, values and arm", {"field": "traffic.whitelist"})
            policy.whitelist.append((str(rule["field"]), frozenset(rule["values"]),
                                     need(rule["arm"], f"traffic.whitelist[{i}].arm")))
        canary = spec.get("canary")
        if canary:
            policy.canary_arm = need(canary.get("arm"), "traffic.canary.arm")
            policy.set_canary(float(canary.get("percent", 0)))
        shadow = spec.get("shadow")
        if shadow:
            policy.shadow_arm = need(shadow.get("arm"), "traffic.shadow.arm")
            policy.shadow_sample = float(shadow.get("sample", 1.0))
        return policy

    def arm_names(self) -> list[str]:
        return [CONTROL, *self.arms]

    def arm_spec(self, arm: str) -> dict[str, Any]:
        return self.arms.get(arm, {})

    def set_canary(self, percent: float) -> None:
        if not 0 <= percent <= 100:
            raise InvalidInput("canary percent must be between 0 and 100", {"field": "percent"})
        self.canary_percent = float(percent)

    def choose(self, record: Mapping[str, Any], override: str | None = None) -> str:
        """The arm for one request (see the module doc for the order)."""
        if override and self.override:
            if override != CONTROL and override not in self.arms:
                raise InvalidInput(f"header X-Shipyard-Arm names unknown arm {override!r}; scene {self.scene!r} "
                                   f"has {self.arm_names()}", {"field": "X-Shipyard-Arm"})
            return override
        for fld, values, arm in self.whitelist:
            if record.get(fld) in values:
                return arm
        if not self.split and not self.canary_arm:
            return CONTROL
        key = record.get(self.key) if self.key else None
        if self.canary_arm and self.canary_percent > 0:
            point = bucket(key, f"{self.scene}:canary") if key is not None else random.random()
            if point * 100 < self.canary_percent:
                return self.canary_arm
        if self.split:
            point = bucket(key, f"{self.scene}:split") if key is not None else random.random()
            for arm, upper in self.split:
                if point < upper:
                    return arm
            return self.split[-1][0]
        return CONTROL

    def shadow(self) -> str | None:
        """The shadow arm for this request, if it is mirrored."""
        if self.shadow_arm is None:
            return None
        if self.shadow_sample >= 1 or random.random() < self.shadow_sample:
            return self.shadow_arm
        return None
