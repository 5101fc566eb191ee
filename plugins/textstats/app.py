"""textstats: text statistics over a granted folder, written in Python.

Built with componentize-py against the `plugin-no-http` world of wit/ (no
Portcullis SDK): plugins/build.sh runs
`componentize-py -d wit -w plugin-no-http componentize app`. The host
validates the arguments against each tool's input schema before `call`.
"""

import json
import os
import re
from collections import Counter

from wit_world import exports
from wit_world.exports import tool
from componentize_py_types import Err

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")

PATH_SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "A file under a granted folder"},
        "top": {"type": "integer", "minimum": 0, "maximum": 50, "default": 5},
    },
    "required": ["path"],
    "additionalProperties": False,
}

DIR_SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "A granted folder"},
    },
    "required": ["path"],
    "additionalProperties": False,
}


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise Err(tool.ToolError_NotFound(f"no such file: {path}"))
    except PermissionError:
        raise Err(tool.ToolError_Denied(f"not granted: {path}"))
    except IsADirectoryError:
        raise Err(tool.ToolError_InvalidInput(f"a folder, not a file: {path}"))
    except UnicodeDecodeError:
        raise Err(tool.ToolError_InvalidInput(f"not UTF-8 text: {path}"))
    except OSError as e:
        raise Err(tool.ToolError_Denied(f"cannot read {path}: {e.strerror}"))


def stats(text, top):
    words = [w.lower() for w in WORD.findall(text)]
    lines = text.splitlines()
    sentences = [s for s in re.split(r"[.!?]+", text) if s.strip()]
    return {
        "lines": len(lines),
        "words": len(words),
        "characters": len(text),
        "sentences": len(sentences),
        "unique_words": len(set(words)),
        "average_word_length": round(sum(map(len, words)) / len(words), 2) if words else 0,
        "top_words": [
            {"word": w, "count": n}
            for w, n in sorted(Counter(words).items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        ],
    }


class Tool(exports.Tool):
    def list_tools(self):
        return [
            tool.ToolSpec(
                name="file_stats",
                title="Text statistics of a file",
                description="Counts lines, words, characters and sentences of a UTF-8 text "
                "file under a granted folder, and lists its most frequent words.",
                input_schema=json.dumps(PATH_SCHEMA),
                output_schema=None,
                effect=tool.Effect.READ,
            ),
            tool.ToolSpec(
                name="folder_stats",
                title="Word counts of a folder",
                description="Counts the words of every .txt and .md file directly in a "
                "granted folder, largest first.",
                input_schema=json.dumps(DIR_SCHEMA),
                output_schema=None,
                effect=tool.Effect.READ,
            ),
        ]

    def call(self, name, arguments):
        args = json.loads(arguments)
        if name == "file_stats":
            return json.dumps(stats(read_text(args["path"]), args.get("top", 5)))
        if name == "folder_stats":
            folder = args["path"]
            try:
                names = sorted(os.listdir(folder))
            except FileNotFoundError:
                raise Err(tool.ToolError_NotFound(f"no such folder: {folder}"))
            except NotADirectoryError:
                raise Err(tool.ToolError_InvalidInput(f"not a folder: {folder}"))
            except OSError as e:
                raise Err(tool.ToolError_Denied(f"cannot list {folder}: {e.strerror}"))
            files = []
            for entry in names:
                if entry.endswith((".txt", ".md")):
                    words = len(WORD.findall(read_text(os.path.join(folder, entry))))
                    files.append({"name": entry, "words": words})
            files.sort(key=lambda f: (-f["words"], f["name"]))
            return json.dumps({"files": files, "total_words": sum(f["words"] for f in files)})
        raise Err(tool.ToolError_InvalidInput(f"unknown tool: {name}"))
