"""The key footer: Textual's own, recomposed only when the keys it would show change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class KeyFooter(Footer):
    """A ``Footer`` that skips a recompose which would show the same keys again.

    Textual recomposes the footer (a widget and a restyle per key) on every change of focus or
    bindings; at start-up that happens several times for the same keys, a large share of the
    main thread's work before the first screen.

    Each key also starts in the compact style and is switched to the footer's at mount, two
    restyles of it for nothing: the keys made here start
    in the footer's style instead."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple | None = None

    def _keys(self) -> tuple:
        return (self.show_command_palette, *((binding.key, binding.description, binding.action, enabled, tooltip)
                for _, binding, enabled, tooltip in self.screen.active_bindings.values() if binding.show))

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, FooterKey) and "compact" in (widget._reactive_connect or {}):
                widget.set_reactive(FooterKey.compact, self.compact)  # bound to it (not the palette key)
            yield widget

    async def recompose(self) -> None:
        keys = self._keys()
        if keys == self._shown and self.children:
            return
        self._shown = keys
        await super().recompose()
