"""UI of the overview: the coronal MIPs side by side; a click navigates (trigger ``mip_click``)."""

from __future__ import annotations

from trame.widgets import html
from trame_server import Server

from LesionResponseReview.web.logic import overview
from LesionResponseReview.web.logic.base import typed_state


def build_overview(server: Server) -> None:
    name = typed_state(server, overview.OverviewState, overview.NAMESPACE).name
    html.Div("Coronal MIP per time point (SUV 0–10, inverted); click to go there", classes="text-caption pa-2")
    with html.Div(classes="d-flex px-1", style="gap: 4px;"):
        with html.Div(v_for=f"(src, k) in {name.images}", key="k", style="flex: 1; min-width: 0;"):
            html.Div(f"{{{{ {name.labels}[k] }}}}", classes="text-caption text-center")
            html.Img(raw_attrs=[':src="src"', ':data-testid="\'mip-\' + k"',
                                "@click=\"(e) => trigger('mip_click', [k, e.offsetX / e.target.clientWidth, "
                                "e.offsetY / e.target.clientHeight])\""],
                     style="width: 100%; cursor: crosshair; image-rendering: pixelated;")
