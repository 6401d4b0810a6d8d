"""One logic class per feature of the review app, each with a typed state dataclass (its own namespace)."""
