"""``/feeder.json``: the feeder diagram's figures of the newest recorded interval (with a
coordinator, the one it plans now) as ``FeederMessage`` fields: every figure for the operator,
publicly only those the diagram shows. The operator's page follows it (``static/live.js``)
each time the coordinator publishes, since the broadcast leaves out what is withheld."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from gridctl.web.feeder_svg import feeder_values

if TYPE_CHECKING:
    from gridctl.web.app import WebApp

router = APIRouter()


@router.get("/feeder.json")
def feeder_json(request: Request) -> Response:
    web: WebApp = request.app.state.web
    doc = feeder_values(web.view.dir, web.operator(request))
    if doc is None:
        raise HTTPException(404, "No feeder state is recorded here.")
    return JSONResponse(doc, headers={"Cache-Control": "no-store"})
