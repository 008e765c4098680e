"""Rules for the compiled kernels, checked on the source with ``ast``.

Inside a ``numba.prange`` body numba's parallel backend silently drops writes made through NamedTuple
attributes (``buf.dones[i] = ...``; numba issues #5872, #7135, #10338): a threaded kernel then returns
wrong results without any error (it once lost every episode end). So a prange body must not write
through an attribute, neither itself nor in an ``@inline`` helper inlined into it; it calls separate
(not inlined) kernels that receive the arrays instead.
"""

from __future__ import annotations

import ast

import pytest
from helpers import ROOT

SRC = ROOT / "src" / "lobgym"


def _is_prange(node: ast.AST) -> bool:
    call = node.iter if isinstance(node, ast.For) else None
    return isinstance(call, ast.Call) and (
        (isinstance(call.func, ast.Attribute) and call.func.attr == "prange")
        or (isinstance(call.func, ast.Name) and call.func.id == "prange"))


def _attribute_writes(body: list[ast.stmt]) -> list[str]:
    """``x.y[...] = ...`` (or ``+=``) statements anywhere in ``body``."""
    found = []
    for stmt in body:
        for node in ast.walk(stmt):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AugAssign) else [])
            for t in targets:
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Attribute):
                    found.append(f"line {node.lineno}: {ast.unparse(t)} = ...")
    return found


def _called_names(body: list[ast.stmt]) -> set[str]:
    return {n.func.id if isinstance(n.func, ast.Name) else n.func.attr
            for stmt in body for n in ast.walk(stmt)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name | ast.Attribute)}


def _inline_functions(trees: list[ast.Module]) -> dict[str, ast.FunctionDef]:
    """Functions decorated ``@inline`` (lobgym.market._jit), by name."""
    found = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(
                    (isinstance(d, ast.Name) and d.id == "inline") for d in node.decorator_list):
                found.setdefault(node.name, []).append(node)
    return found


def _writers(inline: dict[str, list[ast.FunctionDef]]) -> set[str]:
    """Inline helpers that write through an attribute, themselves or through inline helpers they call."""
    writers = {name for name, defs in inline.items() if any(_attribute_writes(d.body) for d in defs)}
    while True:
        more = {name for name, defs in inline.items() if name not in writers
                and any(_called_names(d.body) & writers for d in defs)}
        if not more:
            return writers
        writers |= more


def violations(trees: dict[str, ast.Module]) -> list[str]:
    writers = _writers(_inline_functions(list(trees.values())))
    errors = []
    for where, tree in trees.items():
        for node in ast.walk(tree):
            if not _is_prange(node):
                continue
            errors += [f"{where}, prange body: {w}" for w in _attribute_writes(node.body)]
            inlined = sorted(_called_names(node.body) & writers)
            errors += [f"{where}, line {node.lineno}: the prange body inlines {name}, which writes through an "
                       "attribute; call a separate kernel instead" for name in inlined]
    return errors


def _package() -> dict[str, ast.Module]:
    return {str(p.relative_to(SRC)): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(SRC.rglob("*.py"))}


def test_package_has_prange_loops_to_check():
    assert sum(_is_prange(n) for tree in _package().values() for n in ast.walk(tree)) >= 4


def test_no_prange_body_writes_through_an_attribute():
    errors = violations(_package())
    assert not errors, "\n".join(errors)


BAD = [
    "def k(buf, n):\n    for c in numba.prange(n):\n        buf.done[c] = 1\n",
    "def k(buf, n):\n    for c in prange(n):\n        for i in range(3):\n            buf.x[c, i] += 1.0\n",
    "@inline\ndef w(i, st):\n    st.q[i] = 0\n\ndef k(st, n):\n    for i in numba.prange(n):\n        w(i, st)\n",
    "@inline\ndef w(i, st):\n    st.q[i] = 0\n\n@inline\ndef v(i, st):\n    w(i, st)\n\n"
    "def k(st, n):\n    for i in numba.prange(n):\n        v(i, st)\n",
]
GOOD = [
    "def k(buf, n):\n    for c in numba.prange(n):\n        chunk(c, buf)\n",  # a separate kernel does the writes
    "@inline\ndef u(rng, i):\n    rng[i, 0] += 1\n\ndef k(rng, acc, n):\n    for i in numba.prange(n):\n"
    "        acc[i] += u(rng, i)\n",  # plain arrays are fine
    "def k(buf, n):\n    for c in range(n):\n        buf.done[c] = 1\n",  # serial loops are fine
]


@pytest.mark.parametrize("source", BAD)
def test_checker_rejects(source):
    assert violations({"x.py": ast.parse(source)})


@pytest.mark.parametrize("source", GOOD)
def test_checker_accepts(source):
    assert violations({"x.py": ast.parse(source)}) == []
