// webjson: fetches JSON from an allowlisted HTTP API, written in JavaScript.
//
// Built with componentize-js against the `plugin` world of wit/ (no
// Portcullis SDK). `fetch` goes out through `wasi:http`, i.e. through the
// host's egress gate: only destinations in the manifest's `http` allowlist,
// public addresses only unless allowed, and a secret bound to the
// destination (`[secrets.NAME]` with `inject`) is attached by the host; the
// plugin never sees its value.

const INPUT = {
  type: "object",
  properties: {
    url: { type: "string", description: "An http(s) URL the manifest allows" },
    pointer: {
      type: "string",
      description: "A JSON Pointer (RFC 6901) into the response, e.g. /items/0/name",
    },
  },
  required: ["url"],
  additionalProperties: false,
};

function toolError(tag, message) {
  const e = new Error(message);
  e.payload = { tag, val: message };
  return e;
}

function resolvePointer(value, pointer) {
  if (pointer === undefined || pointer === "") return value;
  if (!pointer.startsWith("/")) throw toolError("invalid-input", `not a JSON Pointer: ${pointer}`);
  for (const raw of pointer.slice(1).split("/")) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    if (value === null || typeof value !== "object" || !(key in value)) {
      throw toolError("not-found", `nothing at ${pointer}`);
    }
    value = value[key];
  }
  return value;
}

async function getJson(args) {
  let response;
  try {
    response = await fetch(args.url, { headers: { accept: "application/json" } });
  } catch (e) {
    // The gate's reason is in the operator's log and the audit log.
    throw toolError("denied", `request failed: ${e}`);
  }
  const text = await response.text();
  if (!response.ok) {
    throw toolError("internal", `HTTP ${response.status} from ${args.url}`);
  }
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw toolError("internal", `not JSON: ${text.slice(0, 80)}`);
  }
  return { status: response.status, value: resolvePointer(body, args.pointer) };
}

export const tool = {
  listTools() {
    return [
      {
        name: "get_json",
        title: "Fetch JSON",
        description:
          "GETs a JSON document from an allowed HTTP API and returns its status and " +
          "the value at an optional JSON Pointer.",
        inputSchema: JSON.stringify(INPUT),
        outputSchema: undefined,
        effect: "read",
      },
    ];
  },

  async call(name, argumentsJson) {
    const args = JSON.parse(argumentsJson);
    if (name === "get_json") return JSON.stringify(await getJson(args));
    throw toolError("invalid-input", `unknown tool: ${name}`);
  },
};
