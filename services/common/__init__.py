"""The ground floor every service stands on: money types, settings, schemas and serde, the bus, stores.

Nothing here knows about trading rules; services' pure cores import only `money` from this package.
"""
