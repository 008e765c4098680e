"""Pydantic models of the background order flow (``market.flow`` / ``market.informed``).

Temporary minimal version (CST only) so the package imports; the flow-model work replaces it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from lobgym.market import flow as F


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class CSTFlow(_Strict):
    model: Literal["cst"] = "cst"
    lam: list[float] = Field(default_factory=lambda: list(F.CST2010["lam_table"]), min_length=1)
    theta: list[float] = Field(default_factory=lambda: list(F.CST2010["theta_table"]), min_length=1)
    mu: float = Field(F.CST2010["mu"], ge=0)
    k: float | None = Field(F.CST2010["k"], ge=0)
    alpha: float | None = Field(F.CST2010["alpha"], ge=0)
    levels: int = Field(10, ge=1, le=1000)
    size: int = Field(1, ge=1)


class InformedConfig(_Strict):
    rate: float = Field(ge=0)
    jump_ticks: float = Field(gt=0)
    kappa: float = Field(ge=0)


FlowConfig = Annotated[CSTFlow, Field(discriminator="model")]


def build_flow_params(flow, informed=None):
    if informed is not None:
        raise NotImplementedError("informed flow")
    return F.make_cst_params(flow.lam, flow.theta, flow.mu, flow.levels, k=flow.k, alpha=flow.alpha, size=flow.size)
