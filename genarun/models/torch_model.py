"""What the loaded models of the torch-based providers (transformers, open_clip,
sentence-transformers) share: one torch module held on a device, and images given as RGB.

torch itself is imported only when a model asks for its memory, so the providers stay cheap to
import.
"""

from __future__ import annotations

from typing import Any

from genarun.errors import ModelError
from genarun.models.base import LoadedModel


class TorchModuleModel(LoadedModel):
    """A loaded model whose weights are one torch module, `self.model` (None once unloaded)."""

    model: Any = None

    def require_loaded(self) -> None:
        """Raise ModelError when the model has been unloaded."""
        if self.model is None:
            raise ModelError(f"model '{self.spec.label()}' was unloaded")

    def unload(self) -> None:
        self.model = None

    def memory_bytes(self) -> int:
        from genarun.models.device import module_bytes

        return 0 if self.model is None else module_bytes(self.model)


def rgb(image: Any) -> Any:
    """Models take RGB; PNGs may be RGBA or palette images."""
    return image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image
