"""The key footer: Textual's own, recomposed only when the keys it would show change."""

from __future__ import annotations

from textual.widgets import Footer


class KeyFooter(Footer):
    """A ``Footer`` that skips a recompose which would show the same keys again.

    Textual recomposes the footer (a widget and a restyle per key) on every change of focus or
    bindings. At start-up that is five times within 0.2 s for the same keys: about a fifth of
    the main thread's work before the first screen."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple | None = None

    def _keys(self) -> tuple:
        return (self.show_command_palette, *((binding.key, binding.description, binding.action, enabled, tooltip)
                for _, binding, enabled, tooltip in self.screen.active_bindings.values() if binding.show))

    async def recompose(self) -> None:
        keys = self._keys()
        if keys == self._shown and self.children:
            return
        self._shown = keys
        await super().recompose()
