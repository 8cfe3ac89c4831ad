"""A fake AppFirst maintenance-windows API (seed 003) served over real HTTP.

Same threading model as :class:`tests.support.fakes.statuspage.FakeStatusPage`::

    with FakeAppFirst() as fa:
        client = AppFirstClient(fa.url, fa.email, fa.api_key)

Its rules are the sandbox's stand-in (``bot.sandbox.appfirst``, written from the seed):
lists and single GETs carry epoch numbers; POST/PUT replies carry ``yyyy-mm-dd HH:MM:SS``
strings, exactly the mix the seed shows. Windows are kept in ``windows`` as ``{"id",
"reason", "start", "end", "servers"}`` with aware UTC datetimes, so tests can read them
without converting.

Like the seed's server, it keeps other times than it is sent: every POST and PUT
stores ``sent + shift`` (``SEED_SHIFT``, +5 h: the seed sends ``14:00`` and gets
``19:00`` back) and says so in its reply. A test that needs no shift sets
``shift = timedelta(0)`` and says why. On top, switches the sandbox has not: lost
replies, the seed's own (invalid) list body, latency and forced failures.
"""

from __future__ import annotations

from aiohttp import web

from bot.sandbox.appfirst import SEED_SHIFT, AppFirstStandIn, error
from tests.support.fakes.statuspage import BackgroundServer

__all__ = ["FakeAppFirst", "SEED_LIST_BODY", "SEED_SHIFT"]

# The seed's list example, byte for byte once every ",\n" gets back the
# trailing space the seed has (kept out of the source so editors cannot strip
# it).  Note the trailing comma after the last item: it is invalid JSON.
SEED_LIST_BODY = """{
    "pagination": {
        "count": 118,
        "next": null,
        "previous": null
    },
    "data": [
        {
            "id": 61,
            "reason": "",
            "start": 1297821600,
            "end": 1297824300,
            "started": true,
            "ended": true,
            "servers": [],
            "url": "/api/v5/maintenance_windows/61/"
        },
        {
            "id": 39,
            "reason": "",
            "start": 1296688500,
            "end": 1296689400,
            "started": true,
            "ended": true,
            "servers": [],
            "url": "/api/v5/maintenance_windows/39/"
        },
    ]
}""".replace(",\n", ", \n")


class FakeAppFirst(AppFirstStandIn, BackgroundServer):
    """The AppFirst maintenance-windows API of seed 003, with switches to make it misbehave."""

    name = "fake-appfirst"
    DEFAULT_EMAIL = "ops@example.com"
    DEFAULT_API_KEY = "af-test-key"

    def __init__(self, email: str = DEFAULT_EMAIL, api_key: str = DEFAULT_API_KEY, *, mount: str = "") -> None:
        self._initial_credentials = (email, api_key)
        AppFirstStandIn.__init__(self, email, api_key)
        BackgroundServer.__init__(self, mount=mount)

    def _reset_switches(self) -> None:
        super()._reset_switches()
        self.email, self.api_key = self._initial_credentials
        self.reset_rules()
        self.seed_trailing_comma: bool = False
        self._lose_remaining = 0

    def _reset_state(self) -> None:
        self.clear()

    def lose_replies(self, n: int) -> None:
        """The next ``n`` POST/PUTs are carried out, but the reply is lost on the way
        back (a gateway answers 504): what a client timing out after sending looks like."""
        with self._lock:
            self._lose_remaining = n

    def _reply_lost(self) -> bool:
        return self._count_down("_lose_remaining")

    def _is_create(self, request: web.Request) -> bool:
        return request.method == "POST" and request.path.endswith("/api/maintenance_windows/")

    def _failure_response(self, status: int) -> web.StreamResponse:
        return error(self.failure_message or "Internal server error.", status)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        if self.seed_trailing_comma:  # the seed's example body itself, invalid JSON and all
            return web.Response(text=SEED_LIST_BODY, content_type="application/json")
        return await super()._list(request)
