"""Hypothesis strategies: request targets that some real server reads as a given path.

Each variant is built only from transformations that a common upstream undoes, so
every one of them names the protected resource for *some* server:

* percent-encoding of any character (every server decodes once);
* changes of case (case-insensitive servers and frameworks: IIS, many Windows and
  PHP/ASP stacks, Spring with case-insensitive matching);
* ``;params`` on any segment, including dot segments (Tomcat, Jetty and other servlet
  containers drop them before resolving ``..``);
* trailing dots and encoded trailing spaces of a segment (Windows servers);
* empty, ``.`` and ``name/..`` segments, with params or encoded dots (every server
  that resolves dot segments), and a detour through another directory;
* the absolute form (``http://host/path``) and a query that names another path.

A forward-auth rule protects that resource only if authgate maps every variant to the
protected path - or refuses it as ambiguous.
"""

from __future__ import annotations

from hypothesis import strategies as st

_PARAM = st.text(alphabet="abcdefjsinoq0123456789=", min_size=0, max_size=8)


@st.composite
def _character(draw: st.DrawFn, char: str) -> str:
    """One character of a segment name: as is, in the other case, or percent-encoded."""
    form = draw(st.sampled_from(["plain", "case", "encoded", "encoded-lower"]))
    if form == "case":
        return char.swapcase()
    if form == "plain" or not char.isascii():
        return char
    encoded = "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return encoded.lower() if form == "encoded-lower" else encoded


@st.composite
def segment_variant(draw: st.DrawFn, name: str) -> str:
    """A segment that servers of some kind read as ``name``."""
    text = "".join(draw(_character(char)) for char in name)
    if draw(st.booleans()):
        text += draw(st.sampled_from([".", "..", "...", "%2e", "%20", ".%20", "%2E."]))
    if draw(st.booleans()):
        text += ";" + draw(_PARAM)
    return text


@st.composite
def _detour(draw: st.DrawFn) -> str:
    """Text between two segments that resolves to a single separator."""
    dot = draw(st.sampled_from([".", "%2e", "%2E", ".;x", "%2e;"]))
    dotdot = draw(st.sampled_from(["..", "%2e%2e", "%2E.", ".%2e", "..;", "..;a=b", "%2e%2e;"]))
    other = draw(st.sampled_from(["public", "x", "PUBLIC", "public;jsessionid=1", "a.b"]))
    return draw(
        st.sampled_from(
            [
                "/",
                "//",
                f"/{dot}/",
                f"/{other}/{dotdot}/",
                f"/;{draw(_PARAM)}/",
                f"/{other}/{other}/{dotdot}/{dotdot}/",
            ]
        )
    )


@st.composite
def target_variant(draw: st.DrawFn, path: str) -> str:
    """A request target that servers of some kind read as the canonical ``path``."""
    segments = [segment for segment in path.split("/") if segment]
    text = ""
    for segment in segments:
        text += draw(_detour()) + draw(segment_variant(segment))
    if draw(st.booleans()):
        text += draw(st.sampled_from(["/", "/.", "/%2e", "/.;x", "//"]))
    if draw(st.booleans()):
        text = "http://upstream.example" + text
    if draw(st.booleans()):
        text += "?next=" + draw(st.sampled_from(["/public/", "/", "/../public"]))
    return text or "/"


def method_variant(method: str) -> st.SearchStrategy[str]:
    """``post``, ``Post``, `` POST``... : what a proxy may pass for ``method``."""
    return st.tuples(
        st.lists(st.booleans(), min_size=len(method), max_size=len(method)),
        st.sampled_from(["", " "]),
    ).map(
        lambda drawn: (
            drawn[1]
            + "".join(c.lower() if low else c for c, low in zip(method, drawn[0], strict=True))
        )
    )
