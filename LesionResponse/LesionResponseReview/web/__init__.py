"""The browser review: a trame-slicer app over :mod:`LesionResponseReview.mrml` (``lesion-response review-app``).

Shape (after trame-slicer's own ``app/``): ``logic/`` holds one small logic class per feature with a typed
state dataclass, ``ui/`` one builder per widget over the same state, and :class:`~.app.ReviewApp` only wires
them. :mod:`.security` guards non-loopback binds with a token; :mod:`.cli` is the command.
"""
