"""The arena over HTTP: `POST /arena/pair`, `POST /arena/vote`, the served clip's audio, the leaderboard.

Mount `build_router(service)` on any FastAPI app (the Gradio app's included). The session id comes from
the `arena_session` cookie (set on the first pair) or the JSON body; the voter key is the client's address
as the server sees it, hashed with the service's salt before it is stored. Refusals are 4xx JSON:
`{"error": code, "message": text}`.
"""

import secrets
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Body, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from .leaderboard import CRITERIA, build_leaderboard
from .service import ArenaError, ArenaService

SESSION_COOKIE = "arena_session"

HTTP_STATUS = {
    "bad_request": 400,
    "bad_answer": 400,
    "wrong_session": 403,
    "unknown_pair": 404,
    "replayed": 409,
    "unknown_model": 409,
    "expired": 410,
    "too_early": 425,
    "rate_limited": 429,
    "daily_cap": 429,
}


def voter_key_from_request(
    client_host: str | None, forwarded_for: str | None, trusted_proxies: int = 0
) -> str:
    """The client address: behind `trusted_proxies` reverse proxies (a Space has one), the entry the
    outermost trusted proxy appended to X-Forwarded-For; entries further left are client-controlled."""
    if trusted_proxies > 0 and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        if len(hops) >= trusted_proxies:
            return hops[-trusted_proxies]
    return client_host or "unknown"


def _refusal(error: ArenaError) -> JSONResponse:
    return JSONResponse({"error": error.code, "message": error.message}, status_code=HTTP_STATUS[error.code])


def build_router(
    service: ArenaService, *, trusted_proxies: int = 0, secure_cookie: bool = False
) -> APIRouter:
    router = APIRouter(prefix="/arena")

    def session_of(request: Request, payload: dict) -> str | None:
        session_id = (payload or {}).get("session_id") or request.cookies.get(SESSION_COOKIE)
        return session_id if isinstance(session_id, str) else None

    def voter_key(request: Request) -> str:
        host = request.client.host if request.client else None
        return voter_key_from_request(host, request.headers.get("x-forwarded-for"), trusted_proxies)

    # plain `def` endpoints: FastAPI runs them in its thread pool, so a vote's fsync never blocks the loop
    @router.post("/pair")
    def serve_pair(request: Request, response: Response, payload: Annotated[dict | None, Body()] = None):
        session_id = session_of(request, payload)
        if session_id is None:
            session_id = secrets.token_urlsafe(24)
            response.set_cookie(
                SESSION_COOKIE, session_id, httponly=True, samesite="lax", secure=secure_cookie, max_age=86400
            )
        try:
            pair = service.serve_pair(session_id, voter_key(request))
        except ArenaError as error:
            return _refusal(error)
        return {
            "pair_id": pair.pair_id,
            "session_id": session_id,
            "clip_id": pair.clip_id,
            "clip_title": pair.clip_title,
            "audio_url": f"{router.prefix}/audio/{pair.pair_id}",
            "caption_a": pair.caption_a,
            "caption_b": pair.caption_b,
            "min_listen_s": pair.min_listen_s,
        }

    @router.post("/vote")
    def vote(request: Request, payload: Annotated[dict | None, Body()] = None):
        payload = payload or {}
        try:
            receipt = service.vote(
                session_of(request, payload),
                voter_key(request),
                payload.get("pair_id"),
                payload.get("accuracy"),
                payload.get("fluency"),
                payload.get("listened_s"),
            )
        except ArenaError as error:
            return _refusal(error)
        return asdict(receipt)

    @router.get("/audio/{pair_id}")
    def audio(pair_id: str, request: Request, session_id: str | None = None):
        try:
            path = service.served_audio_path(session_id or request.cookies.get(SESSION_COOKIE), pair_id)
        except ArenaError as error:
            return _refusal(error)
        return FileResponse(path)

    @router.get("/leaderboard")
    def leaderboard(criterion: str = "accuracy", min_votes: int = 20):
        if criterion not in CRITERIA:
            return JSONResponse(
                {"error": "bad_request", "message": f"criterion must be one of {CRITERIA}"}, status_code=400
            )
        board = build_leaderboard(service.votes(), service.models, criterion=criterion, min_votes=min_votes)
        return asdict(board)

    @router.get("/health")
    def health():
        return {"votes": service.store.vote_count(), "models": service.models}

    return router


def create_app(service: ArenaService, *, trusted_proxies: int = 0) -> FastAPI:
    app = FastAPI(title="musiccap arena")
    app.include_router(build_router(service, trusted_proxies=trusted_proxies))
    return app
