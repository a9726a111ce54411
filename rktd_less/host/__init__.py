"""The only place that spawns processes or mounts file systems."""
