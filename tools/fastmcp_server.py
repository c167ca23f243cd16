"""A FastMCP server over Streamable HTTP behind HTTP Basic auth, as the FastMCP deployment guide
runs one (a container per server, each with its own credentials): an upstream for berth's
`kind = "http"` tests (crates/berth/tests/it/remote.rs).

Usage: fastmcp_server.py PORT USER PASSWORD

Every request must carry `Authorization: Basic base64(USER:PASSWORD)`; anything else gets 401
with a Basic challenge. Each request's Authorization header is also checked to be the only one,
so that a client's own credentials relayed beside berth's would be refused.
"""

import asyncio
import base64
import hmac
import sys

import uvicorn
from fastmcp import Context, FastMCP
from starlette.middleware import Middleware

mcp = FastMCP("fastmcp-upstream")


@mcp.tool
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool
async def count(steps: int, ctx: Context) -> str:
    """Reports progress 1..steps of steps, 50 ms apart."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps)
        await asyncio.sleep(0.05)
    return f"counted to {steps}"


class BasicAuth:
    """Pure ASGI middleware: HTTP Basic with one user, compared in constant time."""

    def __init__(self, app, user: str, password: str):
        self.app = app
        self.expected = b"Basic " + base64.b64encode(f"{user}:{password}".encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(given) == 1 and hmac.compare_digest(given[0], self.expected):
            return await self.app(scope, receive, send)
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"www-authenticate", b'Basic realm="mcp"'), (b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"unauthorized"})


def main() -> None:
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    app = mcp.http_app(path="/mcp", middleware=[Middleware(BasicAuth, user=user, password=password)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
