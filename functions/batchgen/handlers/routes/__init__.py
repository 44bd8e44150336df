"""The api function's routes, one Powertools `Router` per area; `handlers.api` includes them."""
