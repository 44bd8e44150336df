"""The routes an item can take besides a Gemini batch job: the standard (real-time) endpoint."""
