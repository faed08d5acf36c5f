"""Placeholder: the service layer (issue 5) builds here on top of `buckle`."""
