"""The quick reading of `cas-sync`'s arguments, without click.

A run with nothing to do is mostly interpreter start-up, and importing click is a large
part of it. The ordinary forms (the options of `options.OPTIONS`, `--opt value`,
`--opt=value`, `-f value`, `-fvalue`, short flags together as `-vv`, and the `pypi` word
with options before and after it) are read here into exactly the `Options` that
`command.resolve` makes of what click parsed (a test keeps the two in step). Anything else
(--help, --version, `export`, `import`, `--`, a value starting with `-`, an unknown option,
an option that does not apply to the command) returns None: click reads the arguments,
with its usage errors and refusals.
"""

from __future__ import annotations

from .options import BY_NAME, CONDA, OPTIONS, PYPI, Opt, Options


def quick_parse(argv: list[str]) -> tuple[str, Options] | None:
    """(CONDA or PYPI, the options typed) for `argv`, or None when click must read it."""
    spelled = {decl: opt for opt in OPTIONS for decl in opt.decls}
    command = CONDA
    typed: dict = {}
    items = iter(argv)
    for arg in items:
        if arg == "pypi" and command == CONDA:
            command = PYPI
            continue
        if arg[:1] != "-" or arg in ("-", "--"):
            return None
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            opt = spelled.get(name)
            if opt is None or (eq and opt.kind in ("flag", "count")):
                return None
            if opt.kind not in ("flag", "count") and not eq:
                value = next(items, None)
                if value is None or value[:1] == "-":
                    return None
            _add(typed, opt, value)
            continue
        for at, letter in enumerate(arg[1:], start=2):  # -q, -vv, -kq, -f PATH, -fPATH
            opt = spelled.get("-" + letter)
            if opt is None:
                return None
            if opt.kind in ("flag", "count"):
                _add(typed, opt, "")
                continue
            value = arg[at:] or next(items, None)
            if value is None or value[:1] == "-":
                return None
            _add(typed, opt, value)
            break
    if any(command not in BY_NAME[name].commands for name in typed):
        return None
    return command, Options(typed)


def _add(typed: dict, opt: Opt, value: str) -> None:
    """One more occurrence of `opt`, as click accumulates it: a later value wins, -v
    counts, a repeatable option collects its values in order."""
    if opt.kind == "flag":
        typed[opt.name] = True
    elif opt.kind == "count":
        typed[opt.name] = typed.get(opt.name, 0) + 1
    elif opt.kind == "multi":
        typed[opt.name] = (*typed.get(opt.name, ()), value)
    else:
        typed[opt.name] = value
