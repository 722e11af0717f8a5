"""charter-streams: turn an ISP's quality charter into compensations and alerts, in real time."""

__version__ = "0.1.0"
