"""OpenAI API (https://platform.openai.com/docs/api-reference). API key, bearer.

Model calls are classed "write": they spend money and (for responses) store data.
Moderation is free and changes nothing, so it is "read"."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    integer,
    number,
    string,
)

A = action_builder("openai")

ACTIONS = (
    A(
        "list_models",
        "List the models this API key can use.",
        READ,
        "GET",
        "/models",
    ),
    A(
        "create_response",
        "Generate a model response to a text input (Responses API).",
        WRITE,
        "POST",
        "/responses",
        params={
            "model": string("Model id, e.g. 'gpt-4.1-mini'.", minLength=1),
            "input": string("The prompt text.", minLength=1),
            "instructions": string("System-level instructions for the model."),
            "max_output_tokens": integer("Upper bound on generated tokens.", minimum=1),
            "temperature": number("Sampling temperature 0-2.", minimum=0, maximum=2),
        },
        required=("model", "input"),
    ),
    A(
        "create_embedding",
        "Create an embedding vector for a text.",
        WRITE,
        "POST",
        "/embeddings",
        params={
            "model": string("Embedding model, e.g. 'text-embedding-3-small'.", minLength=1),
            "input": string("Text to embed.", minLength=1),
            "dimensions": integer(
                "Number of dimensions (text-embedding-3 models only).", minimum=1
            ),
        },
        required=("model", "input"),
    ),
    A(
        "create_moderation",
        "Classify text for potentially harmful content.",
        READ,
        "POST",
        "/moderations",
        params={
            "input": string("Text to classify.", minLength=1),
            "model": string("Moderation model, e.g. 'omni-moderation-latest'."),
        },
        required=("input",),
    ),
)

PROVIDER = Provider(
    key="openai",
    display_name="OpenAI",
    icon="AI",
    description="OpenAI models: responses, embeddings and moderation.",
    auth_types=(AuthType.API_KEY,),
    api_base_url="https://api.openai.com/v1",
    userinfo_url="/models",
    docs_url="https://platform.openai.com/docs/api-reference",
    actions=ACTIONS,
)
