"""Small widgets the wizard screens share."""

from __future__ import annotations

from textual.widgets import Checkbox


class Check(Checkbox):
    """A checkbox whose glyph says its state: ``✔`` checked, blank unchecked.

    Textual draws both states with the same ``X`` and tells them apart by colour only;
    in a 256-colour terminal the two colours come out alike, so the box looked checked
    either way.
    """

    @property  # type: ignore[override]
    def BUTTON_INNER(self) -> str:  # noqa: N802 - Textual's name for the glyph
        return "✔" if self.value else " "
