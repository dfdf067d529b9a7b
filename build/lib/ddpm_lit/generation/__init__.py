"""Drawing images outside Lightning: the front end every app and the validation hook use, and image files."""
