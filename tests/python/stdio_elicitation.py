"""Answers `portcullis serve`'s approval requests with the official Python
MCP client's `elicitation_callback`.

Usage: stdio_elicitation.py PORTCULLIS_BIN MANIFEST MODE (auto | legacy) ANSWER (accept | decline)

Calls `hostile.wipe` (destructive: it always needs approval). The callback
checks what the person is shown (tool, plugin sha256, arguments) and gives
ANSWER; the call must then run (accept) or come back as an error (decline).
Exits 0 when every check passed. Run by tests/integration/mcp_python.rs.
"""

import asyncio
import os
import sys

from mcp import Client, StdioServerParameters
from mcp.types import ElicitResult


def check(condition, message):
    if not condition:
        raise AssertionError(message)


async def main(binary, manifest, mode, answer):
    asked = []

    async def elicitation_callback(context, params):
        asked.append(params.message)
        return ElicitResult(action=answer)

    params = StdioServerParameters(
        command=binary,
        args=["serve", manifest],
        env={"PORTCULLIS_CACHE_DIR": os.environ.get("PORTCULLIS_CACHE_DIR", "")},
    )
    async with Client(params, mode=mode, elicitation_callback=elicitation_callback) as client:
        result = await client.call_tool("hostile.wipe", {})
        check(len(asked) == 1, f"asked {len(asked)} times: {asked}")
        message = asked[0]
        check("tool: hostile.wipe" in message, f"message: {message!r}")
        check("sha256" in message and "arguments" in message, f"message: {message!r}")
        text = result.content[0].text
        if answer == "accept":
            check(not result.is_error, f"the approved call failed: {result}")
            check(text.startswith("<untrusted-tool-output-"), f"text: {text!r}")
        else:
            check(result.is_error, f"the declined call ran: {result}")
            check("declined" in text, f"text: {text!r}")
    print(f"python mcp client ({mode}, {answer}): all checks passed")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
