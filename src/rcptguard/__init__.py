"""rcptguard: stops email from leaving for the wrong recipient."""

__version__ = "0.1.0"
