"""Plain slotted records: what a dataclass gives (positional or keyword construction,
defaults and per-instance mutable defaults, equality by fields, a readable repr, a dict of
the fields, a changed copy) without `dataclasses`, which with the `inspect`/`ast` it
imports costs about 7 ms at start-up, and each class it decorates about another 0.7 ms
(it compiles its methods). Used by the records on the path of a run where nothing
changed, in cas_index and in cas_mirror (which imports it from here: cas_index imports
nothing of cas_mirror).

A record lists its fields once, in `_fields` (also its `__slots__`); `_defaults` maps a
field to its default, or to a factory (`list`, `dict`) for the fields in `_factories`.
`Frozen` records refuse attribute assignment and hash by their fields. Records pickle
(and copy) by their fields, so they cross process boundaries as dataclasses did.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (warm start-up)
if TYPE_CHECKING:
    from typing import Any, ClassVar


class Plain:
    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict] = {}
    _factories: ClassVar[frozenset] = frozenset()
    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq

    def __init__(self, *args: Any, **kwargs: Any):
        names, given = self._fields, len(args)
        if given > len(names):
            raise TypeError(f"{type(self).__name__}() takes at most {len(names)} arguments")
        put = object.__setattr__
        for name, value in zip(names, args, strict=False):
            put(self, name, value)
        for name in names[given:]:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in self._factories:
                value = self._defaults[name]()
            elif name in self._defaults:
                value = self._defaults[name]
            else:
                raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
            put(self, name, value)
        for key in kwargs:  # what is left was not a field, or was given twice
            if key in names:
                raise TypeError(f"{type(self).__name__}() got multiple values for {key!r}")
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                            f"{key!r}")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def _asdict(self) -> dict[str, Any]:
        """The fields by name (shallow: values are not copied)."""
        return {name: getattr(self, name) for name in self._fields}

    def _replace(self, **changes: Any):
        """A copy with `changes` (dataclasses.replace, NamedTuple._replace)."""
        return type(self)(**{**self._asdict(), **changes})

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self):
        return type(self), self._values()


class Frozen(Plain):
    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._values())
