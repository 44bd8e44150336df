"""Bulk batches: presigned uploads, the `validating` batch and its ingest step, retries of a batch's
unsuccessful items, the stalled-ingest watchdog and the results manifest. Builds on the pipeline.
"""
