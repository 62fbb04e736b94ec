"""Plain sequences that a command and its flow share: no Prefect here."""
