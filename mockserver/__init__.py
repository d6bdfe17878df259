"""mockserver: a local, faithful fake of the APIMart Midjourney video API."""

from .app import create_app
from .clock import Clock, ShiftedClock, SystemClock, VirtualClock
from .settings import Settings

__all__ = ["Clock", "Settings", "ShiftedClock", "SystemClock", "VirtualClock", "create_app"]
__version__ = "0.1.0"
