"""Feature visualization by activation maximization, batched over channels (``attrstream features``).

- :mod:`.image`: the Fourier-space, colour-decorrelated image parametrization.
- :mod:`.transforms`: the random jitter, scale and rotation of every step.
- :mod:`.optimize`: one batch element per channel, a forward that stops at the layer, Adam.
- :mod:`.store`: ``features/<layer>`` as a store job, in a sweep's store or a new one.
- :mod:`.run`: :func:`visualize_features`, the whole job; :mod:`.check`: does it work (diagonal dominance).
"""
