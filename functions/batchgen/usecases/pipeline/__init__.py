"""The pipeline of a batch: create, submit, poll, collect, upload, the end of items and batches (settle),
its chunks and their Gemini job slots (dispatch), reads and management (items, manage), Gemini's webhook.

The lowest feature package: it imports no other (`tests/unit/test_layers.py`).
"""
