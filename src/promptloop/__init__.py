"""promptloop: prompt management, evaluation, logging and fine-tuning for LLM applications.

The package root is the Python SDK; it imports only httpx and pydantic:

    from promptloop import Client

    client = Client()  # PROMPTLOOP_URL, PROMPTLOOP_API_KEY
    version = client.prompts.get("support/answer", environment="production")
"""

__version__ = "0.1.0"
