"""Small deterministic random draws for emulated devices.

``random.Random`` keeps a Mersenne Twister state of 2.5 KB; a fleet of 100,000 devices with one or two
each would spend hundreds of MB on them. ``Draws`` is SplitMix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014): one integer of state, uniform floats in [0, 1), the same
sequence for the same seed. Good enough for check-in jitter; not for anything secret. (Impaired devices,
a few, keep ``random.Random`` for their loss: the fleet tests are tuned to its sequences.)
"""

from __future__ import annotations

__all__ = ["Draws"]

_MASK = (1 << 64) - 1


class Draws:
    __slots__ = ("_state",)

    def __init__(self, seed: int | None = 0) -> None:
        self._state = (seed or 0) & _MASK

    def random(self) -> float:
        """The next float in [0, 1)."""
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        z ^= z >> 31
        return (z >> 11) * (1.0 / (1 << 53))
