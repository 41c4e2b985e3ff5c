"""Building compiled copies of plain Python functions: pieces, renamed copies, digests.

Rule code is written once as plain Python functions marked with :func:`piece`.
A target (the serial and parallel CPU builds, CUDA, the compiled ``minimize``
loop) compiles a *copy* of each piece whose globals map the names of the
pieces it calls to the target's compiled copies of them
(:func:`compile_family`), and puts its loop around the result by making a
copy of a template function whose globals name the compiled pieces
(:func:`specialized`).  Copies are named with a digest of the source they
were made from, so that Numba's disk cache (keyed on the defining file and
the function's name) keeps one entry per version of the rule code.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Callable
from typing import Any

__all__ = ["piece", "pieces_of", "source_digest", "compile_family", "specialized"]


def piece(func: Callable) -> Callable:
    """Mark ``func`` as rule code that the targets compile (see the module docstring).

    The function is returned unchanged: called from Python it is plain Python.
    A piece calls other pieces by their bare global names only.
    """
    func.__nbadam_piece__ = True
    return func


def pieces_of(func: Callable) -> dict[str, Callable]:
    """The pieces ``func`` calls by global name, by that name."""
    found = {}
    for name in func.__code__.co_names:
        value = func.__globals__.get(name)
        if getattr(value, "__nbadam_piece__", False):
            found[name] = value
    return found


def source_digest(*funcs: Callable) -> str:
    """A short hash of the source of ``funcs`` and every piece they reach.

    Compiled copies carry it in their names, so that Numba's disk cache, which
    is keyed on the defining file and the function's name, never serves code
    compiled from an older version of a rule defined in another file.
    """
    seen: dict[int, Callable] = {}
    todo = list(funcs)
    while todo:
        func = todo.pop()
        if id(func) not in seen:
            seen[id(func)] = func
            todo.extend(pieces_of(func).values())
    digest = hashlib.sha256()
    for func in sorted(seen.values(), key=lambda f: (f.__module__, f.__qualname__)):
        try:
            digest.update(inspect.getsource(func).encode())
        except (OSError, TypeError):  # no source (an interactive definition): the bytecode
            digest.update(func.__code__.co_code)
    return digest.hexdigest()[:10]

def compile_family(func: Callable, jit: Callable[[Callable], Any], suffix: str,
                   memo: dict[int, Any] | None = None) -> Any:
    """``jit`` applied to a copy of piece ``func`` that calls compiled copies of its pieces.

    Parameters
    ----------
    func : callable
        A :func:`piece`.
    jit : callable
        The target's decorator (``numba.njit(inline="always")``,
        ``cuda.jit(device=True)``, ...).
    suffix : str
        Appended to the copies' names (the target).
    memo : dict, optional
        Compiled copies by ``id`` of the original, shared across calls for one
        target so that a piece used twice is compiled once.
    """
    memo = {} if memo is None else memo
    if id(func) not in memo:
        overrides = {name: compile_family(sub, jit, suffix, memo)
                     for name, sub in pieces_of(func).items()}
        memo[id(func)] = jit(specialized(func, f"{func.__name__}_{suffix}", **overrides))
    return memo[id(func)]


def specialized(template: Callable, name: str, **globals_: Any) -> Callable:
    """A copy of function ``template`` named ``name``, with ``globals_`` added to its globals.

    The copy has its own globals dictionary (so the CUDA simulator's swap of
    the ``cuda`` module reaches it) and its own name (so that each copy has
    its own Numba cache entry and shows under its name in profiles).
    """
    namespace = dict(template.__globals__)
    namespace.update(globals_)
    copy = types.FunctionType(template.__code__, namespace, name, template.__defaults__,
                              template.__closure__)
    copy.__qualname__ = name
    copy.__module__ = template.__module__
    copy.__doc__ = template.__doc__
    return copy
