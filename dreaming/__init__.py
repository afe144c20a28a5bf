"""Dreaming for agent memory: consolidate an agent's memory store from its past sessions.

The core package holds the business logic as plain functions and classes. It never imports
Prefect (flows/ and tasks/ wrap it) and imports Great Expectations only inside the gate.
"""

__version__ = "0.1.0"
