"""Backbone networks shared by SSL pretraining, evaluation and feature extraction."""
