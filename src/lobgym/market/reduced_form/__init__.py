"""The reduced-form market (Avellaneda-Stoikov style): a mid-price diffusion and Poisson fills.

Fills arrive at Poisson rates ``A exp(-k delta)`` of the quotes' distance to the mid. :mod:`.state`
holds its types, :mod:`.model` the per-step formulas, :mod:`.step` the step kernel; :mod:`.reference`
is the pure-Python oracle.
"""
