"""Reporting: Markdown model cards of trained runs."""

from breastus.reporting._model_card import MODEL_CARD_FILE as MODEL_CARD_FILE
from breastus.reporting._model_card import build_model_card as build_model_card
from breastus.reporting._model_card import write_model_card as write_model_card

__all__ = ["MODEL_CARD_FILE", "build_model_card", "write_model_card"]
