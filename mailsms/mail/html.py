"""HTML body to readable text, minus the quote and signature markup clients add.

Used by :mod:`mailsms.mail.parse` only when a message has no usable text/plain
part (monitoring alerts, some phone clients). Mail clients mark quoted history
and signatures structurally, which is far more reliable than guessing from the
rendered text, so those elements are removed from the tree first:

* Gmail ``div.gmail_quote`` / ``blockquote.gmail_quote``, Yahoo
  ``div.yahoo_quoted``, Apple Mail and Thunderbird ``blockquote type=cite``
  (with Thunderbird's ``div.moz-cite-prefix`` attribution);
* Outlook: everything from the reply header (``div#divRplyFwdMsg``,
  ``div#appendonsend``, the ``border-top:solid #E1E1E1`` header box) to the end;
* signatures: Gmail ``gmail_signature``, Outlook ``#Signature`` and the mobile
  ``ms-outlook-mobile-signature``, Thunderbird ``moz-signature``.

The rest is rendered by inscriptis (Apache-2.0; html2text is GPL and writes
Markdown) with paragraph margins off, as Outlook's ``MsoNormal`` style has
them, so each visual line becomes one text line. lxml and inscriptis are
imported on first use: most mail never needs them.
"""

from __future__ import annotations

import html as html_entities
import re
from typing import Any

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>")
_TAG = re.compile(r"<[^>]*>")

_QUOTE_XPATH = (
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' yahoo_quoted ')]"
    " | //blockquote[translate(@type, 'CITE', 'cite') = 'cite']"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' moz-cite-prefix ')]"
)
_CUT_TO_END_IDS = frozenset(
    {"divRplyFwdMsg", "appendonsend", "mail-editor-reference-message-container"}
)
_OUTLOOK_HEADER_BOX = re.compile(r"border-top:\s*solid\s+#(E1E1E1|B5C4DF)", re.IGNORECASE)
_SIGNATURE_XPATH = (
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_signature ')]"
    " | //*[@data-smartmail = 'gmail_signature']"
    " | //*[@id = 'Signature' or @id = 'signature' or @id = 'ms-outlook-mobile-signature']"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' moz-signature ')]"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' ms-outlook-mobile-signature ')]"
)

_config: Any = None


def html_to_text(markup: str, *, strip_quotes: bool = True, strip_signatures: bool = True) -> str:
    """Render an HTML body as text, without quoted history and signatures as asked."""
    tree = _parse(markup)
    if tree is None:
        return _crude_text(markup)
    if strip_quotes:
        _cut_quotes(tree)
    if strip_signatures:
        _drop_all(tree.xpath(_SIGNATURE_XPATH))
    from inscriptis.html_engine import Inscriptis  # type: ignore[import-untyped]

    text: str = Inscriptis(tree, _parser_config()).get_text()
    return text


def _parse(markup: str) -> Any:
    """The lxml document for ``markup``, or None when there is nothing lxml will take."""
    import lxml.etree  # type: ignore[import-untyped]
    import lxml.html  # type: ignore[import-untyped]

    markup = _XML_DECLARATION.sub("", markup, count=1).strip()
    if not markup:
        return None
    try:
        return lxml.html.document_fromstring(markup)
    except (lxml.etree.LxmlError, ValueError):
        return None


def _crude_text(markup: str) -> str:
    """Last resort for markup lxml refuses: drop tags, resolve entities."""
    return html_entities.unescape(_TAG.sub(" ", markup))


def _cut_quotes(tree: Any) -> None:
    _drop_all(tree.xpath(_QUOTE_XPATH))
    for element in tree.iter("div"):
        if _is_outlook_reply_header(element):
            _cut_to_end(element)
            return


def _is_outlook_reply_header(element: Any) -> bool:
    if element.get("id") in _CUT_TO_END_IDS:
        return True
    if "OutlookMessageHeader" in (element.get("class") or ""):
        return True
    return bool(_OUTLOOK_HEADER_BOX.search(element.get("style") or ""))


def _cut_to_end(element: Any) -> None:
    """Remove ``element`` and everything after it in document order."""
    node = element
    while node is not None and node.getparent() is not None:
        parent = node.getparent()
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        node = parent
    _drop(element)


def _drop_all(elements: list[Any]) -> None:
    for element in elements:
        _drop(element)


def _drop(element: Any) -> None:
    """Remove an element but keep its tail text, which belongs to the parent."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    previous = element.getprevious()
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def _parser_config() -> Any:
    """Inscriptis' strict profile with no paragraph margins (one visual line, one text line)."""
    global _config
    if _config is None:
        from inscriptis.css_profiles import CSS_PROFILES  # type: ignore[import-untyped]
        from inscriptis.html_properties import Display  # type: ignore[import-untyped]
        from inscriptis.model.config import ParserConfig  # type: ignore[import-untyped]
        from inscriptis.model.html_element import HtmlElement  # type: ignore[import-untyped]

        css = CSS_PROFILES["strict"].copy()
        css["p"] = HtmlElement(display=Display.block)
        _config = ParserConfig(css=css, display_links=False, display_images=False)
    return _config
