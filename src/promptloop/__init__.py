"""promptloop: prompt management, evaluation, logging and fine-tuning for LLM applications.

The package root is the Python SDK; it imports only httpx and pydantic:

    from promptloop import Client

    client = Client()  # PROMPTLOOP_URL, PROMPTLOOP_API_KEY, PROMPTLOOP_PROJECT
    version = client.prompts.get("support/answer", environment="production")
"""

from promptloop.sdk import *  # noqa: F403 - the SDK is the package's public surface
from promptloop.sdk import __all__ as _sdk_names

__version__ = "0.1.0"
__all__ = list(_sdk_names)
