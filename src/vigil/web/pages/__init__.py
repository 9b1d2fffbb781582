"""The console's pages, one module per page (like the API's domains): each is
`router(console) -> APIRouter`, reading through `console.context`, the API's own services."""

from vigil.web.pages import alerts, assets, coverage, hunt, incidents, intel, overview, zerotrust

ROUTERS = (
    overview.router,
    incidents.router,
    alerts.router,
    hunt.router,
    coverage.router,
    assets.router,
    zerotrust.router,
    intel.router,
)

__all__ = ["ROUTERS"]
