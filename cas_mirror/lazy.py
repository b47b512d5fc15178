"""A package's names imported from its modules when first asked for (PEP 562): the
package lists which module each name lives in, and a run that never asks for a name does
not import its module (net/: the transfer machinery; storage/: the object-storage code)."""

from __future__ import annotations


def lazy_names(package: str, table: dict[str, str], namespace: dict):
    """The `__getattr__` and `__dir__` of `package` (its `__name__`), whose `namespace`
    (its `globals()`) gets each name of `table` (name -> module of the package) on first
    use."""

    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{package}.{table[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__
