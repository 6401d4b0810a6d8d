"""One UI builder per widget of the review app, over the state of the matching logic."""
