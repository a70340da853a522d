"""switchboard: a streaming LLM gateway for ElevenLabs voice agents."""

__version__ = "0.1.0"
