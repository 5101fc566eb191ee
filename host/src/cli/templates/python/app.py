"""{{name}}: a Portcullis tool plugin in Python. Build it with ./build.sh."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import tool

GREET = {
    "type": "object",
    "properties": {"name": {"type": "string", "description": "The name of the person to greet."}},
    "required": ["name"],
    "additionalProperties": False,
}


class Tool(exports.Tool):
    def list_tools(self):
        return [
            tool.ToolSpec(
                name="greet",
                title=None,
                description="Greets someone by name.",
                input_schema=json.dumps(GREET),
                output_schema=None,
                effect=tool.Effect.READ,
            )
        ]

    def call(self, name, arguments):
        args = json.loads(arguments)
        if name != "greet":
            raise Err(tool.ToolError_InvalidInput(f"unknown tool: {name}"))
        if not args["name"].strip():
            raise Err(tool.ToolError_InvalidInput("`name` is empty"))
        return json.dumps(f"Hello, {args['name']}!")
