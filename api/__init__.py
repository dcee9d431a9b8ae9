"""The REST API server of dagkeeper: FastAPI app factory, routers per resource, schemas."""
