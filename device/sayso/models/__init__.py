"""The model manager: the sha256-pinned manifest and fetching models out of registry packages."""
