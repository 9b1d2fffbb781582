"""The console (`/console`): server-rendered pages over the API's services, for analysts.
`vigil.web.server` runs `vigil serve`'s HTTP side: the API and the console together."""

from vigil.web.site import mount

__all__ = ["mount"]
