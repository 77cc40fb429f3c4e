"""``thor gen``: TIRGen (THOR's actor-critic generation of tool-integrated training data), rejection
sampling, and the multi-stage filter (``thor gen filter``)."""
