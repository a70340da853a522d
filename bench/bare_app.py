"""The cold-start baseline: a bare FastAPI app under uvicorn, one GET /health route and nothing else."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}
