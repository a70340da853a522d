"""A simulated upstream provider, speaking the OpenAI Chat Completions and Anthropic Messages APIs.

The gateway talks to it over HTTP like any other host. `make run` starts one when no real provider
key is set; the tests and `make bench` use it as the upstream. Every reply is labelled simulated.
"""

from switchboard.simulator.app import SimulatorApp
from switchboard.simulator.script import Script

__all__ = ["SimulatorApp", "Script"]
