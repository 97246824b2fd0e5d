"""The few places where viser 1.x and viser 0.2.7 (pinned by nerfstudio 1.1.5) differ.

Everything else in this package uses API present in both. Each feature here is
detected by looking at the installed viser, never by version string alone, so
intermediate versions get whatever they actually offer.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import viser

log = logging.getLogger(__name__)

def _installed_version() -> str:
    version = getattr(viser, "__version__", None)  # absent in viser 0.2.x
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("viser")
        except Exception:  # noqa: BLE001 - metadata missing in vendored copies
            version = "0"
    return str(version)


VERSION_STRING = _installed_version()
VISER_VERSION: tuple[int, ...] = tuple(
    int(p) for p in VERSION_STRING.split("+")[0].split(".")[:3] if p.isdigit()
)

try:  # the module layout is the same in 0.2.x and 1.x
    from viser._gui_api import GuiApi as _GuiApi
    from viser._scene_api import SceneApi as _SceneApi
except ImportError:  # pragma: no cover - very old or very new layouts
    _SceneApi = _GuiApi = object  # type: ignore[assignment,misc]

#: One batched node for many line segments (viser >= 0.2.x after 0.2.7; absent in 0.2.7).
HAS_LINE_SEGMENTS = hasattr(_SceneApi, "add_line_segments")
#: An image element in the GUI panel (absent in 0.2.7).
HAS_GUI_IMAGE = hasattr(_GuiApi, "add_image")
#: ``server.get_scene_serializer()`` -> .viser recordings (0.2.7 has only ``_start_scene_recording``).
HAS_SERIALIZER = hasattr(viser.ViserServer, "get_scene_serializer")
#: Typed scene-level click callbacks (``scene.on_click``); 0.2.7 has ``scene.on_pointer_event``.
HAS_SCENE_ON_CLICK = hasattr(_SceneApi, "on_click")


def _params(fn: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return set()


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a viser ``add_*`` function with only the keyword arguments it names.

    Newer viser versions take options that older ones reject (``precision``,
    ``thickness_units``, ``point_shading``...); dropping them keeps one call site
    for both. ``**_deprecated_kwargs`` catch-alls do not count as accepting a name.
    """
    names = _params(fn)
    kept = {k: v for k, v in kwargs.items() if k in names}
    dropped = set(kwargs) - set(kept)
    if dropped:
        log.debug("viser %s: %s does not take %s", VERSION_STRING, getattr(fn, "__name__", fn),
                  sorted(dropped))
    return fn(*args, **kept)


def has_prop(handle: Any, name: str) -> bool:
    """The handle lets us assign ``name`` in place (viser 1.x props); 0.2.7 handles do not."""
    return any(name in getattr(klass, "__dict__", {}) or name in getattr(klass, "__dataclass_fields__", {})
               for klass in type(handle).__mro__)


def on_scene_click(server: viser.ViserServer, callback: Callable[[np.ndarray, np.ndarray, Any], None]
                   ) -> None:
    """Register ``callback(ray_origin, ray_direction, client)`` for clicks anywhere in the scene."""

    def handler(event: Any) -> None:
        origin = getattr(event, "ray_origin", None)
        direction = getattr(event, "ray_direction", None)
        if origin is None or direction is None:
            return
        callback(np.asarray(origin, dtype=np.float64), np.asarray(direction, dtype=np.float64),
                 getattr(event, "client", None))

    if HAS_SCENE_ON_CLICK:
        server.scene.on_click()(handler)
    else:  # viser 0.2.x
        server.scene.on_pointer_event("click")(handler)


def scene_serializer(server: viser.ViserServer) -> Any:
    """A recorder of scene messages with ``insert_sleep`` and ``serialize``, or None if unsupported."""
    if HAS_SERIALIZER:
        return server.get_scene_serializer()
    start = getattr(server, "_start_scene_recording", None)
    if start is None:
        return None
    rec = start()

    class _Shim:  # viser 0.2.x: same data, older method names
        def insert_sleep(self, duration: float) -> None:
            rec.insert_sleep(duration)

        def serialize(self) -> bytes:
            return rec.end_and_serialize()

    return _Shim()
