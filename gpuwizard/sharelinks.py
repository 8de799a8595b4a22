"""Google Drive share links -> (file | folder, ID, resource key).

Why: the original procedure's datasets are "anyone with the link" Drive shares, which
wget and curl cannot fetch (virus-scan interstitials, quota pages, cookies). rclone can,
through an authenticated drive remote, if it is given the *ID*: files go through
``rclone backend copyid remote: ID dest/`` and folders through the connection string
``remote,root_folder_id=ID:``. Giving a file ID as root_folder_id silently copies
nothing (rclone issue #7458), so telling files from folders matters.

:func:`dataset_source_problem` is the one rule for a dataset source given as a link
(the recipe checker, the Dataset screen and the planner all ask it).

Rules (docs/facts/rclone-drive.md §4c): ``/folders/ID`` first, then ``/file/(u/N/)?d/ID``,
then the Docs ``/d/ID`` forms, then the ``id=`` query parameter. ``open?id=`` links and
bare IDs can be either kind: they come back as ``"unknown"`` and the dataset step tries
copyid first, falling back to a folder copy on rclone's "can't copy directory" error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

Kind = Literal["file", "folder", "unknown"]

#: Drive IDs: URL-safe base64 characters. New file/folder IDs are 33 characters, old
#: ones 28 ("0B..."), Shared Drive IDs 19 ("0A..."); anything under 10 is a typo.
ID_RE = re.compile(r"^[A-Za-z0-9_-]{10,200}$")
_RK_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")

_DRIVE_HOSTS = {"drive.google.com", "docs.google.com", "drive.usercontent.google.com"}
_SHORTENERS = {"goo.gl", "bit.ly", "tinyurl.com", "t.co", "shorturl.at", "rb.gy", "is.gd"}
_DOCS_KINDS = {"document", "spreadsheets", "presentation", "drawings", "file"}


class ShareLinkError(ValueError):
    """A link that is not a usable Drive file or folder link; the message says why and
    what to paste instead."""


@dataclass(frozen=True)
class DriveLink:
    """A parsed share link. ``resource_key`` comes from ``?resourcekey=`` (old link-shared
    items need it; rclone takes it as the drive option ``resource_key``)."""

    kind: Kind
    id: str
    resource_key: str | None = None

    def connection_string(self, remote: str) -> str:
        """``remote,root_folder_id=ID[,resource_key=RK]:`` for a folder copy. The option
        is scoped to this one remote, unlike ``--drive-root-folder-id`` which would also
        apply to a drive destination."""
        opts = f"root_folder_id={self.id}"
        if self.resource_key:
            opts += f",resource_key={self.resource_key}"
        return f"{remote},{opts}:"


def is_drive_link(text: str) -> bool:
    """True when ``text`` looks like a Google Drive/Docs URL (parsable or not)."""
    t = text.strip().lower()
    t = re.sub(r"^https?://", "", t)
    host = t.split("/", 1)[0].split("?", 1)[0]
    return host in _DRIVE_HOSTS


def _check_id(value: str, url: str) -> str:
    if not ID_RE.match(value):
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ShareLinkError(
            f"{shown!r} in {_short(url)} is not a Drive ID (IDs are 10 or more letters, digits, - and _; "
            "the link may be cut off: copy it again with Share > Copy link)")
    return value


def _short(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."


def parse_drive_link(url: str) -> DriveLink:
    """Parse any Drive/Docs share link (or a bare ID) into a :class:`DriveLink`.

    Raises :class:`ShareLinkError` with a message the user can act on.
    """
    if not isinstance(url, str):
        raise ShareLinkError("expected a link as text")
    raw = url.strip().strip("<>\"'")
    if not raw:
        raise ShareLinkError("empty link: paste a Google Drive share link "
                             "(https://drive.google.com/file/d/ID/view or .../drive/folders/ID)")
    if re.search(r"\s", raw):
        raise ShareLinkError(f"{_short(raw)!r} contains spaces: paste exactly one link")
    if "://" not in raw and "/" not in raw and "?" not in raw:
        if ID_RE.match(raw):
            return DriveLink("unknown", raw)
        raise ShareLinkError(f"{_short(raw)!r} is neither a Drive link nor a Drive ID")
    if "://" not in raw:
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        host = (parts.hostname or "").lower()
    except ValueError:  # e.g. an unbalanced "[" in the host part
        raise ShareLinkError(f"{_short(url)} is not a well-formed link") from None
    if parts.scheme not in ("http", "https"):
        raise ShareLinkError(f"{_short(url)} is not a web link (http/https)")
    if host in _SHORTENERS:
        raise ShareLinkError(f"{_short(url)} is a shortened link, which cannot be resolved offline: "
                             "open it in a browser and paste the drive.google.com address it leads to")
    if host not in _DRIVE_HOSTS:
        raise ShareLinkError(f"{_short(url)} is not a Google Drive link (host {host or '?'}); "
                             "for other web servers use an http remote (type: http, url: ...)")
    query = parse_qs(parts.query)
    rk = (query.get("resourcekey") or query.get("resourceKey") or [None])[0]
    if rk is not None and not _RK_RE.match(rk):
        raise ShareLinkError(f"the resourcekey in {_short(url)} has unexpected characters")
    path = re.sub(r"/{2,}", "/", parts.path)
    segs = [s for s in path.split("/") if s]

    def after(marker: str) -> str | None:
        return segs[segs.index(marker) + 1] if marker in segs and segs.index(marker) + 1 < len(segs) else None

    if "folders" in segs:
        fid = after("folders")
        if fid is None:
            raise ShareLinkError(f"{_short(url)} ends at /folders/ without a folder ID")
        return DriveLink("folder", _check_id(fid, url), rk)
    if segs[:1] == ["file"]:  # /file/d/ID/... and /file/u/N/d/ID/...
        fid = after("d")
        if fid is None:
            raise ShareLinkError(f"{_short(url)} has no /d/ID part: copy the link again with Share > Copy link")
        return DriveLink("file", _check_id(fid, url), rk)
    if host == "docs.google.com":
        if "e" in segs and after("d") == "e":
            raise ShareLinkError(f"{_short(url)} is a 'Publish to the web' link, which carries no file ID: "
                                 "use the document's Share > Copy link instead")
        if segs and segs[0] == "forms":
            raise ShareLinkError(f"{_short(url)} is a Google Form; forms cannot be downloaded as a dataset")
        if segs and segs[0] in _DOCS_KINDS and "d" in segs:
            fid = after("d")
            if fid is None:
                raise ShareLinkError(f"{_short(url)} has no document ID after /d/")
            return DriveLink("file", _check_id(fid, url), rk)
    ids = query.get("id")
    if ids:
        fid = _check_id(ids[0], url)
        last = segs[-1] if segs else ""
        if last in ("uc", "download"):
            return DriveLink("file", fid, rk)
        if last in ("embeddedfolderview", "folderview"):
            return DriveLink("folder", fid, rk)
        if last == "open":
            return DriveLink("unknown", fid, rk)
        return DriveLink("unknown", fid, rk)
    if segs[:1] == ["drive"] and len(segs) >= 2:
        what = segs[-1]
        hints = {"my-drive": "your own 'My Drive'", "shared-with-me": "the 'Shared with me' list",
                 "recent": "the 'Recent' list", "starred": "the 'Starred' list", "trash": "the trash",
                 "search": "a search page", "home": "the Drive home page"}
        if what in hints or segs[-2:-1] == ["search"]:
            raise ShareLinkError(f"{_short(url)} points at {hints.get(what, 'a search page')}, not a file or "
                                 "folder: right-click the item, choose Share > Copy link, and paste that")
    raise ShareLinkError(f"{_short(url)} has no file or folder ID; Drive links look like "
                         "https://drive.google.com/file/d/ID/view or https://drive.google.com/drive/folders/ID")


def dataset_source_problem(src: str) -> str | None:
    """Why a dataset source given as a link can never be fetched, or None.

    Only the source's own form: a Drive link must name a file or folder; any other web
    URL is fetched with rclone's http backend, which needs it to end in a file name.
    ``REMOTE:path`` sources pass (whether the remote exists is the recipe's business).
    """
    if is_drive_link(src):
        try:
            parse_drive_link(src)
        except ShareLinkError as exc:
            return str(exc)
        return None
    if src.startswith(("http://", "https://")):
        if not src.rpartition("/")[2] or "?" in src or "#" in src:
            return "a web URL must end in a file name, without ?query; or define an http remote"
    return None
