"""The Celery worker: runs traces for the API's jobs."""
