"""Thin Prefect tasks over the core package: each wraps one plain function and adds retries/logging."""
