"""hap-oauth-hermes: Hermes Agent refreshes its Anthropic (Claude Code) login through hap.

Hermes Agent 0.19 refreshes the Claude Code login itself (``CredentialPool._refresh_entry``
-> ``refresh_anthropic_oauth_pure``, then ``_write_claude_code_credentials``), with no lock
across processes: measured with 32 processes racing one expired login, 62-63 POSTs, 60-61
``invalid_grant``, 30 of 32 left without a token, and ``subscriptionType``/``rateLimitTier``
dropped from ``~/.claude/.credentials.json``. This plugin, loaded by Hermes' own plugin
loader (``hermes plugins enable hap-oauth``), routes that refresh and write-back through hap:

- ``CredentialPool._refresh_entry`` for the ``claude_code`` row: ``hap resolve`` of that row
  (one POST machine-wide, every sibling adopts it; hap writes Claude Code's file keeping every
  field). Hermes then updates and saves its own row as it always does. A forced refresh (what
  Hermes does after a 401) is a 401 reported to hap, then a resolve.
- ``anthropic_adapter._refresh_oauth_token`` (the pool-less path): the same, on the
  credentials file alone.
- ``CredentialPool._mark_exhausted`` for that row: a 4xx/5xx Hermes records is reported to
  hap's ``report_failure`` too, so every process, in any language, sees it.
- ``write_credential_pool`` as ``agent.credential_pool`` calls it: Hermes rewrites its rows
  whole and would drop the keys hap adds (``hap_rejected_fingerprint``, the 401 marker); they
  are carried over from the row on disk, under Hermes' own ``auth.lock``.

Every other provider, and every other Anthropic source (``hermes_pkce``, ``manual``, env
tokens), keeps Hermes' own code.

It patches only a Hermes it knows: the installed ``hermes-agent`` version must be one listed
in ``KNOWN``, and the source of every function it replaces or relies on must hash to what
that version shipped. On anything else (another version, a changed function, a missing
attribute, no libhap, a bad ``HAP_CONFIG``) it patches nothing and logs one line saying why:
Hermes then behaves exactly as without the plugin. hap's configuration comes from
``HAP_CONFIG`` (a JSON file of ``hap_pool_open`` keys); the two store paths are always
Hermes' own (its profile's ``auth.json`` and ``~/.claude/.credentials.json``).

Subscription credentials are for one person's own use of Claude Code and Anthropic's apps:
hap shares one person's login between that person's own processes, nothing more.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

__version__ = "0.1.0"

log = logging.getLogger("hap_oauth_hermes")

# What this plugin patches or relies on, and the sha256 of each one's source as the Hermes
# version shipped it. A version is supported only when every digest matches.
KNOWN: dict[str, dict[str, str]] = {
    "0.19.0": {
        "agent.credential_pool:CredentialPool._refresh_entry": (
            "c21471d2339381852ffac4a460a650c224817f4c17fa9ee0187b1eca36d511f7"
        ),
        "agent.credential_pool:CredentialPool._mark_exhausted": (
            "4345d4f2ca79eecbfe01f766631526440433924aa9b6081eade2960f1dda4a76"
        ),
        "agent.credential_pool:CredentialPool._replace_entry": (
            "28b345368391f3cd91c0d01278ed81c5580e4b7a1500914a43649a8bc5a47b1f"
        ),
        "agent.credential_pool:CredentialPool._persist": (
            "f70b2ab6b026152b2a4dc73397c61b6cf910d3ad4e73e744f158a45e19f2581c"
        ),
        "agent.credential_pool:CredentialPool._entry_needs_refresh": (
            "d7267caccfda0e76aad093c2c8c7a33703b6738f19d665e0f24cf395b31dfc69"
        ),
        "agent.credential_pool:_normalize_error_context": (
            "f620b2a2b9a1605152ea288ab0c993a14940f0a3727b13f439387b7aa10db296"
        ),
        "agent.credential_pool:write_credential_pool": (
            "2451935d336680c1ab4aef9d00bd401875e8a6a0d4b7bee21f707648770ed9b4"
        ),
        "agent.anthropic_adapter:_refresh_oauth_token": (
            "1b9303b84e8b78cabda6df3475a35ae6204ca47d1cb069f30382cdedbfbc9ebd"
        ),
        "agent.anthropic_adapter:read_claude_code_credentials": (
            "58172a6b4097b8e1311a9a04946e4dcefd33acab7a666b3326a1ccbc8e61eead"
        ),
        "agent.anthropic_adapter:_read_claude_code_credentials_from_file": (
            "4ce6c95b23a5f62ffe20d1a50287916ca7217da926236366db10f6be5657be88"
        ),
        "hermes_cli.auth:write_credential_pool": (
            "2451935d336680c1ab4aef9d00bd401875e8a6a0d4b7bee21f707648770ed9b4"
        ),
        "hermes_cli.auth:_auth_store_lock": (
            "55a2167a399a949edcac92943abc472670616d9e77a3572451d5c5f4c13ceb08"
        ),
        "hermes_cli.auth:_load_auth_store": (
            "93798eecf765d241fbbb928b74c22d9edba9af89dc629c6a8c8b92a1ebaf534f"
        ),
        "hermes_cli.auth:_auth_file_path": (
            "110ad038aaeecbb0c113b5d74ba0cf1309ca4fbf0b281436100bcfacebb9d2f2"
        ),
    },
}

# Hermes refreshes a token that expires within 120 s (``_entry_needs_refresh``): ask hap for
# at least as much.
MIN_VALIDITY_MS = 120_000
# The keys hap keeps in a pool row beyond Hermes' own.
HAP_ROW_PREFIX = "hap_"

_lock = threading.Lock()
_installed = False
_pools: dict[tuple[str | None, str], Any] = {}
_hap: Any = None


def _resolve(target: str) -> Any:
    module_name, _, attr_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def source_digest(obj: Any) -> str:
    """sha256 of an object's source text, as inspect finds it."""
    return hashlib.sha256(inspect.getsource(obj).encode("utf-8")).hexdigest()


def _binding() -> Any:
    # The binding's distribution is `hap-oauth`, imported as `hap_oauth` (a different project
    # holds `hap` on the Python index).
    try:
        return importlib.import_module("hap_oauth")
    except ImportError as e:
        raise ImportError("the hap Python binding is not installed: pip install hap-oauth") from e


def _paths() -> tuple[str, str]:
    """The stores this Hermes process uses: its profile's auth.json, Claude Code's file."""
    auth_mod = importlib.import_module("hermes_cli.auth")
    pool_path = str(auth_mod._auth_file_path())
    # Hermes reads ~/.claude/.credentials.json (not $CLAUDE_CONFIG_DIR): hap must serve the
    # very file Hermes reads.
    creds_path = str(Path.home() / ".claude" / ".credentials.json")
    return pool_path, creds_path


def _pool(with_rows: bool = True) -> Any:
    """hap's pool for this process (one per store pair), reopened after a fork()."""
    pool_path, creds_path = _paths()
    key = (pool_path if with_rows else None, creds_path)
    with _lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            # adopt_external_logins off: Hermes seeds its own claude_code row; hap must not
            # add a second one Hermes would then delete as a duplicate.
            pool = _hap.Pool(
                {
                    "provider": "anthropic",
                    "pool_path": key[0],
                    "credentials_path": creds_path,
                    "adopt_external_logins": False,
                }
            )
            _pools[key] = pool
        return pool


def _check() -> str | None:
    """Why this Hermes cannot be patched, or None when it can."""
    try:
        version = importlib.metadata.version("hermes-agent")
    except importlib.metadata.PackageNotFoundError:
        return "hermes-agent is not installed in this Python"
    digests = KNOWN.get(version)
    if digests is None:
        return f"hermes-agent {version} is not a version this plugin knows ({', '.join(KNOWN)})"
    for target, want in digests.items():
        try:
            got = source_digest(_resolve(target))
        except (ImportError, AttributeError, OSError, TypeError) as exc:
            return f"hermes-agent {version}: cannot inspect {target} ({type(exc).__name__})"
        if got != want:
            return f"hermes-agent {version}: {target} is not the code this plugin knows"
    try:
        global _hap
        _hap = _binding()
        _pool(with_rows=True)
        _pool(with_rows=False)
    except Exception as exc:  # any failure to load or open libhap keeps Hermes as it was
        return f"hap cannot open the stores: {type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------- the patches


def _hap_token(pool: Any, credential_id: str | None, stale: str | None, forced: bool) -> Any:
    """A token from hap for one credential. ``forced`` (Hermes saw ``stale`` refused): when hap
    still holds that very token, report the 401 first so hap refreshes instead of serving it;
    when it already holds another one, a sibling has rotated and that one is the answer."""
    token = pool.resolve_token(credential_id=credential_id, min_validity_ms=MIN_VALIDITY_MS)
    if forced and token.access_token == stale:
        pool.report_failure(token.credential_id, 401)
        token = pool.resolve_token(credential_id=credential_id, min_validity_ms=MIN_VALIDITY_MS)
    return token


def _failure_context(exc: Any) -> dict[str, Any]:
    """Hermes' error context for a hap failure: its cooldown ends when hap's does."""
    retry_at_ms = getattr(exc, "retry_at_ms", None)
    if retry_at_ms:
        return {"reset_at": retry_at_ms / 1000.0, "message": f"hap: {exc.name}"}
    if isinstance(exc, (_hap.Unavailable, _hap.LockTimeout, _hap.IoError)):
        return {"reset_at": time.time() + 60.0, "message": f"hap: {exc.name}"}
    return {"message": f"hap: {exc.name}"}


def _patch_refresh_entry(cp: Any, ad: Any) -> Callable[..., Any]:
    original = cp.CredentialPool._refresh_entry

    def _refresh_entry(self: Any, entry: Any, *, force: bool) -> Any:
        if self.provider != "anthropic" or entry.source != "claude_code":
            return original(self, entry, force=force)
        if entry.auth_type != cp.AUTH_TYPE_OAUTH:
            return original(self, entry, force=force)
        try:
            try:
                token = _hap_token(_pool(), entry.id, entry.access_token, force)
            except _hap.UnknownCredential:
                # The row is not in this profile's file (a profile reading the global pool):
                # the login itself is still Claude Code's file.
                token = _hap_token(_pool(with_rows=False), None, entry.access_token, force)
        except _hap.HapError as exc:
            log.info("hap-oauth: refresh of %s failed: %s", entry.id, exc)
            self._mark_exhausted(entry, None, _failure_context(exc))
            return None
        refresh_token = entry.refresh_token
        expires_at_ms = token.expires_at_ms
        creds = ad.read_claude_code_credentials() or {}
        if creds.get("accessToken") == token.access_token:
            refresh_token = creds.get("refreshToken") or refresh_token
            expires_at_ms = creds.get("expiresAt") or expires_at_ms
        # What Hermes' own success path does, minus the POST and the file write.
        updated = replace(
            entry,
            access_token=token.access_token,
            refresh_token=refresh_token,
            expires_at_ms=expires_at_ms,
            last_status=cp.STATUS_OK,
            last_status_at=None,
            last_error_code=None,
            last_error_reason=None,
            last_error_message=None,
            last_error_reset_at=None,
        )
        self._replace_entry(entry, updated)
        self._persist()
        return updated

    return _refresh_entry


def _patch_mark_exhausted(cp: Any) -> Callable[..., Any]:
    original = cp.CredentialPool._mark_exhausted

    def _mark_exhausted(self: Any, entry: Any, status_code: Any, error_context: Any = None) -> Any:
        if (
            self.provider == "anthropic"
            and entry.source == "claude_code"
            and isinstance(status_code, int)
            and 400 <= status_code <= 599
        ):
            _report(cp, entry, status_code, error_context)
        return original(self, entry, status_code, error_context)

    return _mark_exhausted


def _report(cp: Any, entry: Any, status_code: int, error_context: Any) -> None:
    ctx = cp._normalize_error_context(error_context)
    try:
        pool = _pool()
        if status_code == 401:
            # hap judges a 401 against the token it last served for the row, and Hermes may
            # hold a token it read itself: have hap serve the current one first. When that
            # is not the refused token, a sibling already rotated: old news, no report (hap
            # must not refresh the new token for it).
            current = pool.resolve_token(credential_id=entry.id, min_validity_ms=0)
            if current.access_token != entry.access_token:
                return
        pool.report_failure(
            entry.id,
            status_code,
            reason=ctx.get("reason"),
            message=ctx.get("message"),
            reset_at=ctx.get("reset_at"),
        )
    except _hap.HapError as exc:
        log.info("hap-oauth: could not report HTTP %s for %s: %s", status_code, entry.id, exc)


def _patch_write_credential_pool(auth_mod: Any) -> Callable[..., Any]:
    original = auth_mod.write_credential_pool

    def write_credential_pool(
        provider_id: str, entries: list[Any], *, removed_ids: Any = None
    ) -> Any:
        if provider_id != "anthropic":
            return original(provider_id, entries, removed_ids=removed_ids)
        # Hermes' lock is re-entrant per thread: the original takes it again inside, so what
        # is read here cannot change before it writes.
        with auth_mod._auth_store_lock():
            store = auth_mod._load_auth_store()
            rows = (store.get("credential_pool") or {}).get(provider_id)
            kept: dict[str, dict[str, Any]] = {}
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, dict) and row.get("id"):
                    extra = {k: v for k, v in row.items() if k.startswith(HAP_ROW_PREFIX)}
                    if extra:
                        kept[row["id"]] = extra
            merged = []
            for e in entries:
                ours = kept.get(str(e.get("id"))) if isinstance(e, dict) else None
                # Hermes' own keys win; hap's are added where Hermes' dict lacks them.
                if ours:
                    e = {**e, **{k: v for k, v in ours.items() if k not in e}}
                merged.append(e)
            return original(provider_id, merged, removed_ids=removed_ids)

    return write_credential_pool


def _patch_refresh_oauth_token() -> Callable[..., Any]:
    def _refresh_oauth_token(creds: Any) -> str | None:
        stale = creds.get("accessToken") if isinstance(creds, dict) else None
        try:
            token = _hap_token(_pool(with_rows=False), None, stale, forced=True)
        except _hap.HapError as exc:
            log.info("hap-oauth: Claude Code token refresh failed: %s", exc)
            return None
        return str(token.access_token) if token.access_token != stale else None

    return _refresh_oauth_token


def install() -> bool:
    """Patch Hermes if it is one this plugin knows; else log one line and change nothing."""
    global _installed
    if _installed:
        return True
    problem = _check()
    if problem is not None:
        log.warning("hap-oauth: not active, Hermes keeps its own Anthropic refresh: %s", problem)
        return False
    cp = importlib.import_module("agent.credential_pool")
    ad = importlib.import_module("agent.anthropic_adapter")
    auth_mod = importlib.import_module("hermes_cli.auth")
    # Build every replacement first, then swap them in one go: never half-patched.
    patches = [
        (cp.CredentialPool, "_refresh_entry", _patch_refresh_entry(cp, ad)),
        (cp.CredentialPool, "_mark_exhausted", _patch_mark_exhausted(cp)),
        (cp, "write_credential_pool", _patch_write_credential_pool(auth_mod)),
        (ad, "_refresh_oauth_token", _patch_refresh_oauth_token()),
    ]
    for owner, name, fn in patches:
        fn.__hap_oauth_original__ = getattr(owner, name)  # type: ignore[attr-defined]
        setattr(owner, name, fn)
    _installed = True
    log.info("hap-oauth: Hermes' Anthropic refresh goes through hap (%s)", _hap.library_version())
    return True


def register(ctx: Any) -> None:
    """Hermes' plugin entry point (``hermes_agent.plugins``)."""
    install()
