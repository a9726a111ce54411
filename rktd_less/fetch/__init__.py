"""Getting images into the store: local files now; HTTPS discovery and docker:// later.
The only aiohttp user lives here."""
