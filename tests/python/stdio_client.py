"""Drives `portcullis serve` over stdio with the official Python MCP client.

Usage: stdio_client.py PORTCULLIS_BIN MANIFEST MODE (auto | legacy)

Exits 0 when every check passed; prints what failed otherwise. Run by
tests/integration/mcp_python.rs inside the virtualenv it sets up.
"""

import asyncio
import os
import sys

from mcp import Client, StdioServerParameters


def check(condition, message):
    if not condition:
        raise AssertionError(message)


async def main(binary, manifest, mode):
    params = StdioServerParameters(
        command=binary,
        args=["serve", manifest],
        # The child gets only a few variables by default: keep the compile
        # cache where the test put it.
        env={"PORTCULLIS_CACHE_DIR": os.environ.get("PORTCULLIS_CACHE_DIR", "")},
    )
    async with Client(params, mode=mode) as client:
        expected = "2026-07-28" if mode == "auto" else "2025-11-25"
        check(client.protocol_version == expected, f"negotiated {client.protocol_version}, not {expected}")

        listed = await client.list_tools()
        tools = {tool.name: tool for tool in listed.tools}
        check("json.length" in tools, f"json.length not listed: {sorted(tools)}")
        length = tools["json.length"]
        check(length.annotations.read_only_hint is True, f"annotations: {length.annotations}")
        meta = length.meta or {}
        check(len(meta.get("dev.portcullis/plugin_sha256", "")) == 64, f"_meta: {meta}")

        result = await client.call_tool("json.length", {"value": [1, 2, 3]})
        check(not result.is_error, f"call failed: {result}")
        if mode == "auto":
            # Legacy peers only get object-valued structured content.
            check(result.structured_content == 3, f"structured: {result.structured_content}")
        text = result.content[0].text
        check(text.startswith("<untrusted-tool-output-"), f"text: {text!r}")

        invalid = await client.call_tool("json.query", {"value": 1, "path": 7})
        check(invalid.is_error, f"invalid arguments were not an error: {invalid}")
        check("/path" in invalid.content[0].text, f"field not named: {invalid.content[0].text!r}")

        limited = await client.call_tool("hostile.spin", {})
        check(limited.is_error, f"limit hit was not an error: {limited}")
        check("fuel" in limited.content[0].text, f"limit not named: {limited.content[0].text!r}")
    print(f"python mcp client ({mode}): all checks passed")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
