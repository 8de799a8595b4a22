"""Share-link parser table: every Drive URL form users paste, and the malformed ones,
each with the kind/ID it must yield or the words its error must contain."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from gpuwizard import recipe
from gpuwizard.sharelinks import DriveLink, ShareLinkError, dataset_source_problem, is_drive_link, parse_drive_link

FID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"   # 33 chars, like a modern file ID
OLD = "0B7EVK8r0v71pZjFTYXZWM3FlRnM"          # 28 chars, an old-style ID
RK = "0-Hx9abcDEF_ghiJK"

GOOD = [
    (f"https://drive.google.com/file/d/{FID}/view?usp=sharing", DriveLink("file", FID)),
    (f"https://drive.google.com/file/d/{FID}/view", DriveLink("file", FID)),
    (f"https://drive.google.com/file/d/{FID}", DriveLink("file", FID)),
    (f"https://drive.google.com/file/d/{FID}/edit?usp=drive_link", DriveLink("file", FID)),
    (f"https://drive.google.com/file/u/1/d/{FID}/view", DriveLink("file", FID)),
    (f"https://drive.google.com/file/d/{FID}/view?resourcekey={RK}", DriveLink("file", FID, RK)),
    (f"https://drive.google.com/uc?id={FID}&export=download", DriveLink("file", FID)),
    (f"https://drive.google.com/uc?export=download&id={FID}", DriveLink("file", FID)),
    (f"https://drive.usercontent.google.com/download?id={FID}&export=download&confirm=t", DriveLink("file", FID)),
    (f"https://drive.google.com/open?id={OLD}", DriveLink("unknown", OLD)),
    (f"https://drive.google.com/drive/folders/{FID}?usp=sharing", DriveLink("folder", FID)),
    (f"https://drive.google.com/drive/u/0/folders/{FID}", DriveLink("folder", FID)),
    (f"https://drive.google.com/drive/u/2/folders/{FID}?resourcekey={RK}", DriveLink("folder", FID, RK)),
    (f"https://drive.google.com/drive/mobile/folders/{FID}", DriveLink("folder", FID)),
    (f"https://drive.google.com/embeddedfolderview?id={FID}#list", DriveLink("folder", FID)),
    (f"https://docs.google.com/document/d/{FID}/edit?usp=sharing", DriveLink("file", FID)),
    (f"https://docs.google.com/spreadsheets/d/{FID}/edit#gid=0", DriveLink("file", FID)),
    (f"https://docs.google.com/presentation/d/{FID}/edit", DriveLink("file", FID)),
    (f"https://docs.google.com/document/u/0/d/{FID}/edit", DriveLink("file", FID)),
    (f"drive.google.com/file/d/{FID}/view", DriveLink("file", FID)),                # no scheme
    (f"http://drive.google.com/file/d/{FID}/view", DriveLink("file", FID)),
    (f"  <https://drive.google.com/file/d/{FID}/view>  ", DriveLink("file", FID)),  # pasted with brackets
    (FID, DriveLink("unknown", FID)),                                                 # a bare ID
]

BAD = [
    ("", "empty link"),
    ("   ", "empty link"),
    ("hello", "neither a Drive link nor a Drive ID"),
    ("https://example.com/file/d/" + FID + "/view", "not a Google Drive link"),
    ("https://goo.gl/abc123", "shortened link"),
    ("ftp://drive.google.com/file/d/" + FID, "not a web link"),
    ("https://drive.google.com/file/d/abc/view", "not a Drive ID"),
    ("https://drive.google.com/file/d/" + FID[:20] + "%20x/view", "not a Drive ID"),
    ("https://drive.google.com/drive/folders/", "without a folder ID"),
    ("https://drive.google.com/drive/my-drive", "not a file or folder"),
    ("https://drive.google.com/drive/shared-with-me", "Shared with me"),
    ("https://drive.google.com/drive/search?q=dataset", "search page"),
    ("https://drive.google.com/", "no file or folder ID"),
    ("https://docs.google.com/document/d/e/2PACX-1vQabcdefghijkl/pub", "Publish to the web"),
    ("https://docs.google.com/forms/d/" + FID + "/viewform", "Google Form"),
    ("https://drive.google.com/uc?id=short", "not a Drive ID"),
    ("https://drive.google.com/file/d/" + FID + "/view https://drive.google.com/x", "spaces"),
    (f"https://drive.google.com/drive/folders/{FID}?resourcekey=bad!key", "resourcekey"),
]


@pytest.mark.parametrize("url,expected", GOOD, ids=[u.strip()[:60] for u, _ in GOOD])
def test_good_links(url: str, expected: DriveLink) -> None:
    assert parse_drive_link(url) == expected


@pytest.mark.parametrize("url,words", BAD, ids=[u[:50] or "empty" for u, _ in BAD])
def test_bad_links_say_why(url: str, words: str) -> None:
    with pytest.raises(ShareLinkError) as exc:
        parse_drive_link(url)
    assert words.lower() in str(exc.value).lower()


def test_table_is_big_enough() -> None:
    assert len(GOOD) + len(BAD) >= 15


def test_connection_string() -> None:
    assert DriveLink("folder", FID).connection_string("gd") == f"gd,root_folder_id={FID}:"
    assert DriveLink("folder", FID, RK).connection_string("gd") == f"gd,root_folder_id={FID},resource_key={RK}:"


def test_is_drive_link() -> None:
    assert is_drive_link(f"https://drive.google.com/file/d/{FID}/view")
    assert is_drive_link("docs.google.com/document/d/x")
    assert not is_drive_link("gdrive:data.zip")
    assert not is_drive_link("https://example.org/data.zip")


@given(st.text(max_size=200))
def test_never_crashes(text: str) -> None:
    try:
        link = parse_drive_link(text)
    except ShareLinkError as exc:
        assert str(exc)
    else:
        assert link.kind in ("file", "folder", "unknown")
        assert all(c.isalnum() or c in "-_" for c in link.id)


@pytest.mark.parametrize("src,words", [
    ("https://drive.google.com/drive/my-drive", "not a file or folder"),
    ("https://drive.google.com/file/d/short/view", "is not a Drive ID"),
    ("https://example.org/get?file=data.zip", "must end in a file name"),
    ("https://example.org/data/", "must end in a file name"),
])
def test_a_source_that_can_never_be_fetched_fails_validate_with_file_line_col(src: str, words: str) -> None:
    """One rule, asked by the recipe checker (here), the Dataset screen and the planner."""
    assert words in (dataset_source_problem(src) or "")
    text = ("version: 1\nname: x\ntarget: {ssh: {hosts: [u@h]}}\n"
            "rclone: {remotes: {gd: {type: drive, token_file: /t}}}\n"
            f"datasets:\n  - {{from: '{src}', remote: gd, to: ~/d/}}\n")
    with pytest.raises(recipe.RecipeError) as exc:
        recipe.loads(text, "r.yaml")
    assert "r.yaml:6:12: " in str(exc.value) and "datasets[0].from" in str(exc.value) and words in str(exc.value)


@pytest.mark.parametrize("src", ["gd:data.zip", "https://example.org/data.zip",
                                 "https://drive.google.com/file/d/1AbCdEfGhIjKlMnOp/view?usp=sharing"])
def test_fetchable_sources_pass(src: str) -> None:
    assert dataset_source_problem(src) is None
