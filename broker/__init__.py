"""A local Apache Kafka (KRaft mode) for the tutorial and its tests: python -m broker --help."""
