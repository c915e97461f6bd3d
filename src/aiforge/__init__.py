"""aiforge: the advanced AI-engineering roadmap as one real Python system."""

__version__ = "0.1.0"
