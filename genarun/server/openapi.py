"""The OpenAPI 3.1 document of `genarun serve`'s API (`GET /api/v1/openapi.json`).

It describes only the routes the server serves: with `--read-only` there is no POST route, so
the document has no POST operation either (a client generated from it would call routes that
answer 405).
"""

from __future__ import annotations

from typing import Any

from genarun.server.hooks import MAX_BODY
from genarun.store.processes import RUN_STATUSES


def openapi_document(*, read_only: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API and the answer webhook; `read_only`: of a
    `serve --read-only` server, which has GET routes only."""
    document = _document()
    document["paths"].update(_page_api_paths())
    if read_only:
        paths = {
            path: {method: op for method, op in item.items() if method == "get"}
            for path, item in document["paths"].items()
        }
        document["paths"] = {path: item for path, item in paths.items() if item}
        document["info"]["description"] = "read-only: the server changes nothing"
    return document


def _document() -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/Error"}

    def reply(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": schema or error}},
        }

    run_param = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
    errors = {"401": reply("no token"), "403": reply("wrong token")}
    # What every operation with a body may answer before reading it (server/api.py _json_body;
    # the webhook reads any type and says 422 for one that is not JSON).
    too_large = {"413": reply(f"the body is over {MAX_BODY} bytes")}
    body_errors = {**too_large, "415": reply("a body that is not application/json")}
    answer_body = {
        "type": "object",
        "required": ["node", "answer"],
        "properties": {
            "node": {"type": "string"},
            "path": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "answer": {},
            "responder": {"type": "string", "maxLength": 100},
        },
    }
    hook_body = {
        "type": "object",
        "required": ["answer"],
        "properties": {"answer": {}, "responder": {"type": "string", "maxLength": 100}},
        "additionalProperties": False,
    }
    empty_body = {"type": "object", "additionalProperties": False, "maxProperties": 0}

    def command(summary: str, done: str, refused: str) -> dict[str, Any]:
        """A command on one run: no body, or {}."""
        return {
            "post": {
                "summary": summary,
                "parameters": [run_param],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": empty_body}},
                },
                "responses": {
                    "200": reply(done, {"type": "object"}),
                    "404": reply("no such run"),
                    "409": reply(refused),
                    "422": reply("a body other than {}"),
                    **body_errors,
                    **errors,
                },
            }
        }

    answered = {"$ref": "#/components/schemas/Answered"}
    text_list = {"type": "array", "items": {"type": "string"}}
    start_body = {
        "type": "object",
        "required": ["tree"],
        "properties": {
            "tree": {"type": "string"},
            "set": text_list,
            "skip": text_list,
            "only": text_list,
            "seed": {"oneOf": [{"type": "integer"}, {"const": "random"}]},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "genarun serve", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
                "Answered": {
                    "type": "object",
                    "properties": {
                        "accepted": {"type": "boolean"},
                        "replayed": {"type": "boolean"},
                        "run": {"type": "string"},
                        "node": {"type": "string"},
                        "path": {"type": "array", "items": {"type": "integer"}},
                        "status": {"enum": ["waiting", "answered"]},
                        "result": {},
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/runs": {
                "get": {
                    "summary": "Runs, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"enum": list(RUN_STATUSES)}},
                        {"name": "tree", "in": "query", "schema": {"type": "string"}},
                        {"name": "experiment", "in": "query", "schema": {"type": "string"}},
                        {"name": "q", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                    "responses": {"200": reply("the runs", {"type": "object"}), **errors},
                },
                "post": {
                    "summary": "Start a run of a tree file of the trees folder, in a worker process",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": start_body}},
                    },
                    "responses": {
                        "200": reply("started: the run's id", {"type": "object"}),
                        "403": reply("outside the trees folder"),
                        "404": reply("no such tree file"),
                        "422": reply("the tree or a --set value has a problem (the CLI's message)"),
                        **body_errors,
                        **errors,
                    },
                },
            },
            "/api/v1/runs/{run_id}/rerun": {
                "post": {
                    "summary": "Rerun nodes or foreach items (cover[2]) of a run, as a new run",
                    "parameters": [run_param],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["node"],
                                    "properties": {"node": text_list},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": reply("started: the new run's id", {"type": "object"}),
                        "404": reply("no such run"),
                        "422": reply("a node that is not in the tree (the CLI's message)"),
                        **body_errors,
                        **errors,
                    },
                }
            },
            "/api/v1/runs/{run_id}/stop": command(
                "Stop a running run (an interrupt: finished work is kept, resumable)",
                "stopping",
                "not running, or running on another host",
            ),
            "/api/v1/runs/{run_id}/pause": command(
                "Pause a running run: no new executions start; running ones finish",
                "paused",
                "not running, or paused already",
            ),
            "/api/v1/runs/{run_id}/unpause": command(
                "Let a paused run start new executions again",
                "unpaused",
                "not paused",
            ),
            "/api/v1/runs/{run_id}": {
                "get": {
                    "summary": "A run (id, prefix or latest): executions and human requests",
                    "parameters": [run_param],
                    "responses": {
                        "200": reply("the run", {"type": "object"}),
                        "404": reply("no such run"),
                        **errors,
                    },
                }
            },
            "/api/v1/runs/{run_id}/events": {
                "get": {
                    "summary": "Live progress: server-sent events, one per finished execution "
                    "(id: its row id; Last-Event-ID or ?after= resumes), then `end`",
                    "parameters": [
                        run_param,
                        {"name": "after", "in": "query", "schema": {"type": "integer"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "the event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "404": reply("no such run"),
                        **errors,
                    },
                }
            },
            "/api/v1/inbox": {
                "get": {
                    "summary": "Human requests waiting for an answer",
                    "responses": {"200": reply("the requests", {"type": "object"}), **errors},
                }
            },
            "/api/v1/runs/{run_id}/answers": {
                "post": {
                    "summary": "Answer a human request of the run",
                    "parameters": [run_param],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": answer_body}},
                    },
                    "responses": {
                        "200": reply("accepted", answered),
                        "404": reply("no such run or request"),
                        "409": reply("answered or expired already"),
                        "422": reply("malformed, or an answer the question does not accept"),
                        **body_errors,
                        **errors,
                    },
                }
            },
            "/runs/{run_id}/{node}/hook": {
                "post": {
                    "summary": "The answer webhook (its own token, or a Standard Webhooks signature)",
                    "security": [],
                    "parameters": [
                        run_param,
                        {
                            "name": "node",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {"name": "token", "in": "query", "schema": {"type": "string"}},
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": hook_body}},
                    },
                    "responses": {
                        "200": reply("accepted", answered),
                        "401": reply("no token or signature"),
                        "403": reply("wrong token or signature"),
                        "404": reply("no such run or request"),
                        "409": reply("answered or expired already"),
                        "422": reply("malformed, or an answer the question does not accept"),
                        **too_large,
                    },
                }
            },
        },
    }


def _page_api_paths() -> dict[str, Any]:
    """The paths of the API routes that live beside the pages (the drawn tree, the diff)."""
    from genarun.server.diff_page import diff_openapi_paths
    from genarun.server.graph_pages import graph_openapi_paths

    return {**graph_openapi_paths(), **diff_openapi_paths()}
