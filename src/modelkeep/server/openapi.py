"""The OpenAPI description at `/api/openapi.json`, made from the operation table.

Each table operation's parameters and result schema come from the Repo method's type
hints through pydantic, the same hints the server decodes requests with, so the document
cannot drift from what the server accepts.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from modelkeep import __version__, api

_ERROR = {
    "description": "an error: a stable code and a one-line message",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
            }
        }
    },
}
_BYTES = {
    "objects/missing": ("post", "Which of these object ids the server lacks", "editor"),
    "objects/locate": ("post", "Where the server keeps these objects", "viewer"),
    "objects": ("post", "Upload one pack (index length, index, pack), verified", "editor"),
    "packs/{pack}": ("get", "Read a range of one pack (Range: bytes=START-END)", "viewer"),
    "versions": ("post", "Commit uploaded content as the next version of a name", "editor"),
    "account": ("get", "The authenticated account and its roles", "any"),
    "tokens": ("get", "List tokens (post: create one; the token is shown once)", "any"),
    "tokens/{token_id}": ("delete", "Revoke a token", "any"),
    "users": ("get", "List users (post: add one)", "admin"),
    "users/{name}": ("patch", "Disable, enable, make admin, set password", "admin"),
    "users/{name}/grants": ("put", "Grant a role, everywhere or on a model glob", "admin"),
    "policy": ("get", "The promotion policy in force", "viewer"),
}  # fmt: skip


def _schema(hint: Any) -> dict[str, Any]:
    try:
        return dict(api.adapter(hint).json_schema(mode="serialization"))
    except Exception:  # a type pydantic cannot describe (Any-like results): say so
        return {}


@functools.cache
def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in api.OPS:
        path = api.PREFIX + op.path.replace(":path}", "}")
        wire = api.params(op)
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in op.path_params
        ]
        body: dict[str, Any] = {}
        for name, (hint, default) in wire.items():
            if name in op.path_params:
                continue
            if op.in_body:
                body[name] = _schema(hint)
            else:
                parameters.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": default is inspect.Parameter.empty,
                        "schema": _schema(hint),
                    }
                )
        spec: dict[str, Any] = {
            "operationId": op.name,
            "summary": (api.signature(op.name)[0].__doc__ or op.name.replace("_", " ")),
            "description": f"Needs the {op.role} role"
            + (f" on the model `{op.model}` names." if op.model else "."),
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "the result",
                    "content": {"application/json": {"schema": _schema(api.result_type(op))}},
                },
                "4XX": _ERROR,
            },
        }
        if op.in_body:
            spec["requestBody"] = {
                "content": {"application/json": {"schema": {"type": "object", "properties": body}}}
            }
        paths.setdefault(path, {})[op.method.lower()] = spec
    for suffix, (method, summary, role) in _BYTES.items():
        paths.setdefault(f"{api.PREFIX}/{suffix}", {})[method] = {
            "summary": summary,
            "description": f"Needs the {role} role.",
            "responses": {"200": {"description": "the result"}, "4XX": _ERROR},
        }
    for probe in ("/healthz", "/readyz"):
        paths[probe] = {"get": {"summary": "liveness" if probe == "/healthz" else "readiness",
                                "responses": {"200": {"description": "up"}}}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelkeep", "version": __version__},
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            }
        },
        "security": [{"token": []}, {"basic": []}],
        "paths": paths,
    }
