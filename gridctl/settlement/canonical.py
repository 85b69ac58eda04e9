"""The canonical bytes of the settlement audit format: every hash and root the ledger covers.

Compact ASCII JSON (``separators=(",", ":")``, non-ASCII escaped as ``\\uXXXX``, object keys
sorted): the bytes ``json.dumps(value, separators=(",", ":"), sort_keys=True)`` gives, made by
one function. Nothing else in gridctl builds JSON that is hashed, signed or chained; a test
holds every module to that. A leaf module: it imports nothing from the rest of settlement.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]

_json_chunks = c_make_encoder(
    None, json.JSONEncoder().default, encode_basestring_ascii, None, ":", ",", True, False, True
)
"""The C encoder ``json.dumps`` runs for these options, made once: ``JSONEncoder.encode``
builds it anew on every call, half of what a short array costs."""


def canonical(value: object, _join: Callable = "".join) -> bytes:
    """Canonical bytes of a JSON value (a posting's flat array, a row list, a digest map).

    value: lists / tuples, dicts with str keys, str, int, float, None.
    Returns compact ASCII JSON, object keys sorted (see the module doc).
    """
    return _join(_json_chunks(value, 0)).encode()
