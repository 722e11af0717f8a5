"""Pydantic v2 models of every topic of SPEC sections 2-3; ``python -m schemas`` exports their JSON Schema."""

from schemas.inputs import INPUT_TOPICS, KEY_FIELD, InputEvent, parse_input
from schemas.outputs import OUTPUT_MODELS

__all__ = ["INPUT_TOPICS", "KEY_FIELD", "OUTPUT_MODELS", "InputEvent", "parse_input"]
