"""The backend author's toolkit: what every session backend needs, written once.

Use these instead of writing your own; ``file://``, ``redis://`` and ``postgresql://`` do.

* URL options (:mod:`aixgo.session.kit.options`): describe each option as an :class:`Option`
  (name, typed parser, default, description) and call :func:`parse_options` once at open. It
  refuses unknown and repeated options with a :class:`~aixgo.errors.ConfigError` showing the
  URL without secrets, and can pass a driver's own keywords through untouched. Parsers:
  :func:`boolean`, :func:`integer`, :func:`seconds`, :func:`choice`, :func:`matching`,
  :func:`text`, :func:`path`.
* Retries (:mod:`aixgo.session.kit.retry`): :class:`RetryPolicy`, capped exponential backoff
  with jitter under a deadline; your code says which failures are transient.
* Errors: :func:`stale_seq`, the :class:`~aixgo.errors.ConflictError` of an ``expected_seq``
  that no longer holds; :class:`~aixgo.errors.BackendTimeout` for a store that did not answer
  in time.
* Stored messages: :func:`stamp_seq` writes ``seq`` into a message's stored JSON, and
  :func:`decode_at` reads stored JSON back as message ``seq`` of a history, and
  :func:`decode_batch` reads a whole tail in one validation
  (:mod:`aixgo.session.codec`, with ``check_batch``, ``check_repeat`` and ``stored_copy``).
* Reads again (optional): :class:`Recent` (:mod:`aixgo.session.kit.recent`) keeps the records
  of each session's latest read with their decoded messages, and reuses a copy of one only
  when the stored bytes just read are byte for byte the kept ones at the same position and seq.
  A store with :class:`~aixgo.session.ReadThrough` also reads through a wrapper's own
  ``Recent(make=...)``, which keeps what the wrapper made of the records (decrypted messages).
* Wrappers: :class:`BackendWrapper` (:mod:`aixgo.session.kit.wrapper`), the base of a backend
  that wraps another (tracing, encryption, the audit log use it): capabilities and optional
  methods answer for the wrapped store.
* Secrets: :class:`Redactor` and :func:`redact_url` (:mod:`aixgo.session.redaction`) show a
  URL, and scrub a driver's messages, without passwords.
"""

from aixgo.errors import BackendTimeout
from aixgo.session.codec import decode_at, decode_batch, stamp_seq
from aixgo.session.kit.conflict import stale_seq
from aixgo.session.kit.options import (
    Option,
    UrlOptions,
    boolean,
    choice,
    integer,
    matching,
    parse_options,
    path,
    seconds,
    text,
)
from aixgo.session.kit.recent import Recent
from aixgo.session.kit.retry import RetryPolicy
from aixgo.session.kit.wrapper import BackendWrapper
from aixgo.session.redaction import Redactor, escape_userinfo, redact_url

__all__ = [
    "BackendTimeout",
    "BackendWrapper",
    "Option",
    "Redactor",
    "Recent",
    "RetryPolicy",
    "UrlOptions",
    "boolean",
    "choice",
    "decode_at",
    "decode_batch",
    "escape_userinfo",
    "integer",
    "matching",
    "parse_options",
    "path",
    "redact_url",
    "seconds",
    "stale_seq",
    "stamp_seq",
    "text",
]
