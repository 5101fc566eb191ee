// {{name}}: a Portcullis tool plugin in JavaScript. Build it with ./build.sh.

const GREET = {
  type: "object",
  properties: { name: { type: "string", description: "The name of the person to greet." } },
  required: ["name"],
  additionalProperties: false,
};

// A tool error: `tag` is invalid-input, not-found, denied or internal.
function toolError(tag, message) {
  const e = new Error(message);
  e.payload = { tag, val: message };
  return e;
}

export const tool = {
  listTools() {
    return [
      {
        name: "greet",
        title: undefined,
        description: "Greets someone by name.",
        inputSchema: JSON.stringify(GREET),
        outputSchema: undefined,
        effect: "read",
      },
    ];
  },

  call(name, argumentsJson) {
    const args = JSON.parse(argumentsJson);
    if (name !== "greet") throw toolError("invalid-input", `unknown tool: ${name}`);
    if (!args.name.trim()) throw toolError("invalid-input", "`name` is empty");
    return JSON.stringify(`Hello, ${args.name}!`);
  },
};
