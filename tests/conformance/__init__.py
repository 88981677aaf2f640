"""Conformance suite: one set of scenarios run against every backend."""
