"""Notifications: the outbox relay and the subscribers of each domain event (webhooks, email, the results
manifest), webhook delivery, a user's endpoints. Builds on the pipeline and the bulk results.
"""
