"""Workers: loaders and the connector. Plain asyncio; nothing here imports Dagster (the exchange
simulator, the dummy-service's exchange, is a room of its own: :mod:`streamforge_pipelines.simulator`)."""
