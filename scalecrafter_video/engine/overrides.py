"""Instance-attribute wrappers that compose with other patchers.

ScaleCrafter wraps bound callables on the instances it patches: each eligible conv's
`_conv_forward`, the UNet's `forward`, and for some pipelines `encode_prompt`. Other code wraps
the same attributes the same way (InvokeAI's seamless tiling saves `conv._conv_forward` and puts
it back later, accelerate and diffusers' hook registry wrap `forward`), in either order. So:

- a wrapper calls what it found (`inner`) and remembers what the instance attribute was (`before`);
- removal puts `before` back only while the wrapper is still the attribute (still ours);
- otherwise the wrapper stays in the other patcher's chain, switched off: an inert wrapper calls
  `inner` and nothing else, so that chain keeps working and reaches the original computation
  bit for bit, whenever the other patcher restores what it saved;
- inert wrappers of ours found on top at a later install or removal are dropped.

A wrapper is identified by its type, never by attributes: `functools.update_wrapper` (used by
accelerate) copies a wrapped function's attributes onto its own wrapper. `__slots__` leave it
nothing to copy.
"""

from __future__ import annotations

_MISSING = object()


class Override:
    """One instance attribute `owner.<name>` replaced by a callable subclass instance."""

    __slots__ = ("__weakref__", "before", "inner", "live", "name", "owner")

    def __init__(self, owner: object, name: str):
        self.owner, self.name = owner, name
        self.inner = self.before = None
        self.live = False

    def install(self) -> None:
        """Put this wrapper on top of whatever `owner.<name>` is now (dropping inert ones of ours)."""
        _drop_inert(self.owner, self.name)
        self.before = self.owner.__dict__.get(self.name, _MISSING)
        self.inner = getattr(self.owner, self.name)
        self.live = True
        self.owner.__dict__[self.name] = self

    def remove(self) -> bool:
        """Switch off (idempotent). Returns True when what was there before is back, False when the
        wrapper stays as a pass-through under another patcher's wrapper."""
        self.live = False
        if self.owner.__dict__.get(self.name, _MISSING) is not self:
            return False
        _set(self.owner, self.name, self.before)
        _drop_inert(self.owner, self.name)
        return True


def _set(owner: object, name: str, value) -> None:
    if value is _MISSING:
        owner.__dict__.pop(name, None)
    else:
        owner.__dict__[name] = value


def _drop_inert(owner: object, name: str) -> None:
    current = owner.__dict__.get(name, _MISSING)
    if not (isinstance(current, Override) and not current.live):
        return
    while isinstance(current, Override) and not current.live:
        current = current.before
    _set(owner, name, current)
