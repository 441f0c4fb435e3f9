"""Settings of the ``openai`` code generator (``codegen.<field>`` on the command line)."""

from __future__ import annotations

import attrs

from neuromosaic_core.llm import LLMSettings


@attrs.frozen
class OpenAISettings(LLMSettings):
    """The shared LLM settings (:class:`~neuromosaic_core.llm.LLMSettings`) plus the endpoint's.

    ``base_url``: the API root, with its version prefix (``http://127.0.0.1:8080/v1`` for a
    llama.cpp or vLLM server). ``api_key_env``: the *name* of the environment variable holding the
    key. The key itself is never a setting, so it never reaches the stored configuration or the
    log; when the variable is unset, the placeholder ``none`` is sent, which local servers without
    authentication accept. ``organization_env``: the name of a variable holding an organization id
    (unset: the client's own ``$OPENAI_ORG_ID``).
    """

    model: str = "gpt-4o-mini"
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    organization_env: str | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.model.strip():
            raise ValueError("model must name the endpoint's model (GET <base_url>/models lists them)")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {self.base_url!r}")
        if not self.api_key_env.strip():
            raise ValueError("api_key_env must name an environment variable (the key itself is never a setting)")
