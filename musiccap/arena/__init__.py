"""The arena: blind A/B votes between captioners, durable vote storage, and the leaderboard."""

from .captions import CachedCaptionSource, CaptionSource, FixedCaptionSource, ServedCaption
from .clips import ArenaClip, build_pool, clip_from_upload
from .hub_sync import HubVoteMirror
from .service import ArenaError, ArenaService, ServedPair, VoteReceipt, load_or_create_salt

__all__ = [
    "ArenaClip",
    "ArenaError",
    "ArenaService",
    "CachedCaptionSource",
    "CaptionSource",
    "FixedCaptionSource",
    "HubVoteMirror",
    "ServedCaption",
    "ServedPair",
    "VoteReceipt",
    "build_pool",
    "clip_from_upload",
    "load_or_create_salt",
]
