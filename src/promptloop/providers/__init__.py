"""Model providers: plugins that turn a rendered request into a completion.

Built-in providers (openai, anthropic, local) register through the same pluggy hook as
third-party ones (see `hookspecs`).
"""
