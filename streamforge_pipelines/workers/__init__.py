"""Workers: loaders, connector, simulator. Plain asyncio; nothing here imports Dagster."""
