"""Drives `portcullis serve --http` with the official Python MCP client's
Streamable HTTP transport.

Usage: http_client.py URL TOKEN MODE (auto | legacy)

Lists the tools, calls one, gets an argument error, and answers an
approval with the `elicitation_callback` (accept). A client without the
token is refused. Exits 0 when every check passed; run by
tests/integration/mcp_python.rs.
"""

import asyncio
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import ElicitResult


def check(condition, message):
    if not condition:
        raise AssertionError(message)


async def main(url, token, mode):
    asked = []

    async def elicitation_callback(context, params):
        asked.append(params.message)
        return ElicitResult(action="accept")

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, elicitation_callback=elicitation_callback) as client:
            expected = "2026-07-28" if mode == "auto" else "2025-11-25"
            check(client.protocol_version == expected, f"negotiated {client.protocol_version}, not {expected}")
            listed = await client.list_tools()
            names = {tool.name for tool in listed.tools}
            check("json.length" in names, f"json.length not listed: {sorted(names)}")

            result = await client.call_tool("json.length", {"value": [1, 2, 3]})
            check(not result.is_error, f"call failed: {result}")
            text = result.content[0].text
            check(text.startswith("<untrusted-tool-output-"), f"text: {text!r}")

            invalid = await client.call_tool("json.query", {"value": 1, "path": 7})
            check(invalid.is_error, f"invalid arguments were not an error: {invalid}")

            approved = await client.call_tool("hostile.wipe", {})
            check(len(asked) == 1, f"asked {len(asked)} times: {asked}")
            check("tool: hostile.wipe" in asked[0], f"message: {asked[0]!r}")
            check(not approved.is_error, f"the approved call failed: {approved}")

    # Without the token the server answers 401 and the client fails.
    refused = False
    try:
        bare = create_mcp_http_client()
        async with bare:
            async with Client(streamable_http_client(url, http_client=bare), mode=mode) as client:
                await client.list_tools()
    except Exception:  # noqa: BLE001 - any failure to connect is the point
        refused = True
    check(refused, "a client without the token was served")
    print(f"python mcp http client ({mode}): all checks passed")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
