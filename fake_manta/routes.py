"""URL patterns -> handlers (moto ``urls.py`` role).

Manta decodes each path segment itself (``decodeURIComponent``), so routing works on the raw path:
one catch-all aiohttp resource, then ``classify`` sorts the path into a Target kind, and
``HANDLERS`` maps (kind, method) to a handler. PUT and POST routes defer ``100 Continue`` to the
handlers (see ``middlewares.defer_continue``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_to_bytes

from aiohttp import web

from fake_manta.errors import InvalidResource, MantaError, MethodNotAllowed, ResourceNotFound
from fake_manta.handlers import directories, objects, uploads
from fake_manta.handlers.common import is_put_directory, is_put_link
from fake_manta.handlers.target import Target
from fake_manta.middlewares import PING_PATH, authorize, defer_continue
from fake_manta.models.store import UPLOAD_ID_RE

LOGIN_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_\-.@%]+$")
STORAGE_TREES = ("public", "stor", "reports")
_BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")

TargetHandler = Callable[[web.Request, Target], Awaitable[web.StreamResponse]]


def decode_path(raw: str) -> list[str]:
    """Per-segment ``decodeURIComponent``; ``//`` collapses, a trailing ``/`` is dropped."""
    decoded = []
    for seg in raw.split("/"):
        if not seg:
            continue
        try:
            if _BAD_ESCAPE.search(seg):
                raise ValueError(seg)
            decoded.append(unquote_to_bytes(seg).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidResource(f'"{raw}" is invalid') from exc
    return [s for s in "/".join(decoded).split("/") if s]


def classify(raw_path: str) -> Target:
    segs = decode_path(raw_path)
    path = "/" + "/".join(segs)
    missing = ResourceNotFound(f"{raw_path} does not exist")
    if not segs or not LOGIN_RE.match(segs[0]):
        raise missing
    login = segs[0]
    if len(segs) == 1:
        return Target("account", login, path)
    top = segs[1]
    if top in STORAGE_TREES:
        return Target("storage", login, path)
    if top != "uploads":
        raise missing
    rest = segs[2:]
    if not rest:
        return Target("uploads_root", login, path)
    if UPLOAD_ID_RE.match(rest[0]):
        if len(rest) > 2 or (len(rest) == 2 and not re.fullmatch("[0-9]+", rest[1])):
            raise missing
        return Target("upload_redirect", login, path, upload_id=rest[0],
                      part=rest[1] if len(rest) == 2 else None)
    if len(rest) == 1:
        return Target("uploads_dir", login, path)
    if not UPLOAD_ID_RE.match(rest[1]) or len(rest) > 3:
        raise missing
    upload_id = rest[1]
    if len(rest) == 2:
        return Target("uploads_dir", login, path, upload_id=upload_id)
    action = rest[2]
    if action in ("state", "commit", "abort"):
        return Target(f"upload_{action}", login, path, upload_id=upload_id)
    return Target("upload_part", login, path, upload_id=upload_id, part=action)


HANDLERS: dict[tuple[str, str], TargetHandler] = {
    ("account", "GET"): directories.get_account_root,
    ("account", "HEAD"): directories.get_account_root,
    ("account", "PUT"): directories.root_not_allowed,
    ("account", "POST"): directories.root_not_allowed,
    ("account", "DELETE"): directories.root_not_allowed,
    ("storage", "GET"): objects.get_path,
    ("storage", "HEAD"): objects.get_path,
    ("storage", "PUT"): objects.put_path,
    ("storage", "DELETE"): objects.delete_path,
    ("storage", "OPTIONS"): objects.options_path,
    ("uploads_root", "GET"): objects.get_path,
    ("uploads_root", "HEAD"): objects.get_path,
    ("uploads_root", "POST"): uploads.create_upload,
    ("uploads_root", "DELETE"): directories.root_not_allowed,
    ("uploads_dir", "GET"): objects.get_path,
    ("uploads_dir", "HEAD"): objects.get_path,
    ("upload_redirect", "GET"): uploads.redirect,
    ("upload_redirect", "HEAD"): uploads.redirect,
    ("upload_redirect", "PUT"): uploads.redirect,
    ("upload_redirect", "POST"): uploads.redirect,
    ("upload_state", "GET"): uploads.get_state,
    ("upload_commit", "POST"): uploads.commit_upload,
    ("upload_abort", "POST"): uploads.abort_upload,
    ("upload_part", "PUT"): uploads.put_part,
    ("upload_part", "HEAD"): objects.get_path,  # muskie: "Allowed: PUT (upload-part), HEAD"
}
_READS = ("GET", "HEAD", "OPTIONS")


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Classify, check the method, authorize, then hand over to the handler."""
    target = classify(request.rel_url.raw_path)
    handler = HANDLERS.get((target.kind, request.method))
    if handler is None:
        allowed = sorted(m for (kind, m) in HANDLERS if kind == target.kind)
        raise MethodNotAllowed(f"{request.method} is not allowed",
                               headers={"Allow": ", ".join(allowed)})
    authorize(request, target.login, target.path, read=request.method in _READS)
    return await handler(request, target)


# -- muskie's route names (lib/server.js), for the audit record's ``route`` --------------------
_TREE_NAMES = {"public": "Public", "stor": "", "reports": "Reports", "uploads": "Uploads"}
_VERBS = {"GET": "Get", "HEAD": "Head", "PUT": "Put", "POST": "Post", "DELETE": "Delete",
          "OPTIONS": "Options"}
#: (target kind, method) -> name, where muskie's name does not follow the general patterns.
_UPLOAD_NAMES = {
    ("uploads_root", "POST"): "CreateUpload",
    ("uploads_root", "PUT"): "PutUploads",
    ("upload_commit", "POST"): "CommitUpload",
    ("upload_abort", "POST"): "AbortUpload",
    ("upload_part", "PUT"): "UploadPart",
    ("upload_part", "HEAD"): "HeadUploadsStorage",  # muskie's generic uploads-tree route
}
_UPLOAD_SUFFIXES = {"upload_state": "UploadState", "upload_commit": "CommitUpload",
                    "upload_abort": "AbortUpload", "upload_part": "Part"}


def route_name(method: str, raw_path: str, content_type: str | None) -> str | None:
    """The name muskie gives the route a request takes (``PutObject``, ``GetStorage``,
    ``UploadPart``...), or None when no route matches (muskie's 404 ``ResourceNotFound``)."""
    try:
        target = classify(raw_path)
    except MantaError:
        return None
    verb = _VERBS.get(method)
    if verb is None:
        return None
    kind = target.kind
    if (kind, method) in _UPLOAD_NAMES:
        return _UPLOAD_NAMES[(kind, method)]
    if kind == "account":
        return f"{verb}RootDir"
    if kind == "upload_redirect":
        return f"{verb}Upload{'Part' if target.part is not None else ''}Redirect"
    if kind in _UPLOAD_SUFFIXES:
        return f"{verb}{_UPLOAD_SUFFIXES[kind]}"
    if kind == "uploads_dir" and target.upload_id is not None and method in ("PUT", "POST",
                                                                             "DELETE"):
        return f"{verb}UploadDir"
    tree = _TREE_NAMES[target.path.split("/")[2]] if kind == "storage" else "Uploads"
    if method == "PUT":
        if is_put_directory(content_type):
            return f"Put{tree}Directory"
        return f"Put{tree}Link" if is_put_link(content_type) else f"Put{tree}Object"
    return f"{verb}{tree}Storage"


async def ping(request: web.Request) -> web.StreamResponse:
    """muskie's ``GetPing`` for the load balancer: 200 once ready (the fake is, once it
    listens; muskie's 503 before its dependencies are up never happens), empty, and
    ``Connection: close``."""
    response = web.Response(status=200, headers={"Connection": "close"})
    response.force_close()
    return response


def setup_routes(app: web.Application) -> None:
    """``GET /ping``, then one catch-all resource; register them after any sub-app
    (``/_fake/``). HEAD /ping falls through to the catch-all (the account ``ping``), as in
    muskie."""
    app.router.add_get(PING_PATH, ping, allow_head=False, name="ping")
    resource = app.router.add_resource("/{tail:.*}", name="manta")
    for method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        resource.add_route(method, dispatch)
    for method in ("PUT", "POST"):
        resource.add_route(method, dispatch, expect_handler=defer_continue)
    resource.add_route("*", dispatch, expect_handler=defer_continue)
