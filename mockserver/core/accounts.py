"""Who is asking: bearer tokens and the accounts they stand for."""

from __future__ import annotations

import functools
import hashlib
import re
import sys

ACCOUNT_ID = re.compile(r"acct_[0-9a-f]{16}")  # what ``account_id`` makes


@functools.lru_cache(maxsize=4096)  # a client sends its token with every request: hash it once
def account_id(token: str) -> str:
    """The account a token stands for; the token itself is never kept. Interned: every task of
    an account shares one string."""
    return sys.intern("acct_" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16])


def shared_account_id(name: str) -> str:
    """The account several keys share (``--shared-accounts NAME=KEY+KEY``); never a token's."""
    return account_id("\x00shared account " + name)


@functools.lru_cache(maxsize=4096)
def key_id(token: str) -> str:
    """A key's own name, for what it spent of a shared account; the token itself is never kept."""
    return "key_" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
