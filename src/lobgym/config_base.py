"""The one strict base of every config model, its error type, its error formatting and the shared bounds.

The base serves every config model (env, market, flow, reward terms, agents, training, learning-rate
control, studies, benchmarks); the bounds are those shared by the models' fields.

A :class:`Strict` model refuses unknown keys and non-finite floats -- also inside free-form
mappings and lists --, is immutable, and ``model_copy(update=...)`` validates the copy like a new
config, so no config object can hold a value its model refuses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

if TYPE_CHECKING:
    from typing_extensions import Self

# Magnitude bounds shared by the models, chosen far inside float64 (and float32 observations) so
# that no product the kernels form over an episode overflows, and far outside any market a user
# would simulate.
#: Largest price, price-valued parameter (depth, fee per lot, jump size) or price move, in price units.
PRICE_MAX = 1e9
#: Largest rate of one event component (market orders, limit orders, cancels, jumps), per unit of time.
RATE_MAX = 1e6
#: Largest coefficient of a reward term or penalty (weights, phi, alpha, gamma, eta, ...).
COEF_MAX = 1e6
#: Largest position, inventory bound or order size, in lots.
LOTS_MAX = 1_000_000
#: Smallest and largest observation divisor (inventory_scale, depth_scale, return_scale).
SCALE_MIN, SCALE_MAX = 1e-3, 1e9
#: Shortest step and longest span (horizon, warm-up, latency), in the market's time unit.
TIME_MIN, TIME_MAX = 1e-6, 1e7
#: Longest list a config may give (rate tables, features, ...).
LIST_MAX = 10_000


class ConfigError(ValueError):
    """A config file or dict failed validation; the message names field, value and what is allowed."""


def _non_finite(value: Any, path: str) -> tuple[str, float] | None:
    """The first non-finite float inside plain mappings and lists (models validate themselves)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}")
        if found is not None:
            return found
    return None


class Strict(BaseModel):
    """Base of every config model: unknown keys, inf and NaN refused; immutable; copies validated."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    @model_validator(mode="after")
    def _finite_everywhere(self) -> Self:
        # allow_inf_nan covers typed float fields; this covers free-form values (dict[str, Any], ...).
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Mapping | list | tuple):
                found = _non_finite(value, name)
                if found is not None:
                    raise ValueError(f"{found[0]} = {found[1]!r}: Input should be a finite number")
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy of this config; with ``update``, validated like a new config (raises :class:`ConfigError`).

        Pydantic's own ``model_copy(update=...)`` skips validation, so it could build a config holding
        a value the model refuses (a negative sigma, a horizon that is not a whole number of steps).
        """
        if not update:
            return super().model_copy(deep=deep)
        data = {name: getattr(self, name) for name in self.model_fields_set} | dict(update)
        try:
            return type(self).model_validate(data)
        except ValidationError as err:
            raise ConfigError(format_error(err, f"{type(self).__name__}.model_copy", type(self), data)) from None


# --------------------------------------------------------------------------------- error messages
def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X``, ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str] | None:
    """Field names accepted by the (nested) model that holds the item at ``loc``, if it can be found."""
    for key in loc[:-1]:
        if isinstance(key, int):
            continue  # a list index: the items' model is the list's
        field = model.model_fields.get(key) if model is not None else None
        if field is None:
            return None
        model = _model_in(field.annotation)
    return list(model.model_fields) if model is not None else None


def _model_names() -> set[str]:
    """Class names of every pydantic model defined so far (pydantic uses them as union tags)."""
    stack, names = [BaseModel], set()
    while stack:
        for sub in stack.pop().__subclasses__():
            names.add(sub.__name__)
            stack.append(sub)
    return names


#: pydantic's tags of scalar union members (``float | int | bool | str | None``).
_SCALAR_TAGS = {"float", "int", "bool", "str", "none", "bytes"}


def _written_loc(loc: tuple, data: Any, missing: bool) -> tuple:
    """``loc`` without the union tags pydantic inserts that are not keys of ``data`` at that point.

    Such as a discriminator's value: ``flow.cst.lam`` is what the user wrote as ``flow.lam``.
    """
    out, node = [], data
    for j, key in enumerate(loc):
        if isinstance(node, BaseModel):
            node = dict(node)
        if isinstance(node, Mapping) and isinstance(key, str) and key not in node and not (
                missing and j == len(loc) - 1):
            continue  # not written there: a tag (but a missing field is, by definition, not there)
        out.append(key)
        if isinstance(node, Mapping):
            node = node.get(key)
        elif isinstance(node, list | tuple) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            node = None
    return tuple(out)


def format_error(err: ValidationError, source: str, model: type[BaseModel] | None = None, data: Any = None) -> str:
    """One line ``source: field = value: what is allowed; ...`` for every error of ``err``.

    ``data``, the validated input, lets the locations drop the tags that are not keys of it.
    """
    # drop union members' tags (``list[...]``, ``function-after[...]``, ``float``, a model class name)
    # from the locations: they are not fields or keys the user wrote
    tags = _model_names() | _SCALAR_TAGS
    errors = [e | {"loc": tuple(x for x in e["loc"] if not (isinstance(x, str) and ("[" in x or x in tags)))}
              for e in err.errors()]
    if data is not None:
        errors = [e | {"loc": _written_loc(e["loc"], data, e["type"] == "missing")} for e in errors]
    # a value that failed every member of a union: drop the members whose very type did not match
    # ("Input should be a valid dictionary") when another member got further into it
    errors = [e for e in errors if not (e["type"].endswith("_type") and any(
        o is not e and not o["type"].endswith("_type") and o["loc"][:len(e["loc"])] == e["loc"] for o in errors))]
    lines: list[str] = []
    for e in errors:
        loc = ".".join(f"[{x}]" if isinstance(x, int) else str(x) for x in e["loc"]).replace(".[", "[")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(model, tuple(e["loc"]))
            if allowed:
                msg += f"; allowed: {', '.join(allowed)}"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        line = f"{loc}{shown}: {msg}" if loc else msg  # top-level validator messages name their field
        if line not in lines:
            lines.append(line)
    return f"{source}: " + "; ".join(lines)
