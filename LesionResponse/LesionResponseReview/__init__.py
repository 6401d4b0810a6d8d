"""The reader's review over MRML, shared by the Slicer module and the browser app.

- :mod:`LesionResponseReview.mrml`: every MRML operation of the review (load, views, navigation, edits), Qt-free.
- :mod:`LesionResponseReview.masks`: reader-made ROI masks (grow a hot spot, re-threshold), no Slicer.
- :mod:`LesionResponseReview.web`: the trame-slicer web app (``lesion-response review-app OUT``).

Importing this package imports nothing heavy; ``mrml`` needs ``slicer`` (desktop Slicer or ``slicer-core``).
"""
