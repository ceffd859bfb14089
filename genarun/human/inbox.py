"""One waiting human request as the inbox shows it, for `genarun inbox --json` and the API."""

from __future__ import annotations

from typing import Any


def option_images(options: list[Any] | None) -> set[str]:
    """The image paths among a request's options (`best` of images: `{"$image": path}`)."""
    return {
        str(option["$image"])
        for option in options or []
        if isinstance(option, dict) and "$image" in option
    }


def shown_images(request: Any) -> list[Any]:
    """The request's images that are not already among its options: a `best` of images names
    them as both, and each is shown once, as the option to pick."""
    picked = option_images(request.options)
    return [image for image in request.images or [] if str(image) not in picked]


def request_fields(request: Any) -> dict[str, Any]:
    """What a person needs to answer a request (store.human.HumanRequest): where it is, the
    question and its options, the answer's schema and its limits. The inbox and the notify
    POST both start from it."""
    return {
        "run": request.run_id,
        "node": request.node_id,
        "path": list(request.path),
        "ask": request.ask,
        "question": request.question,
        "options": request.options,
        "images": request.images,
        "schema": request.schema,
        "expires": request.expires,
        "collect": request.collect,
    }


def inbox_row(store: Any, request: Any) -> dict[str, Any]:
    """A waiting request as the inbox lists it (JSON-ready)."""
    from genarun.store.human import vote_count

    return request_fields(request) | {
        "images": shown_images(request),
        "created": request.created,
        "votes": vote_count(store, request.id) if request.collect else None,
        "notify": request.notify_status,
    }
