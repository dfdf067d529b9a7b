"""Scoring images: metrics, feature networks and caches, and the Scorer."""
