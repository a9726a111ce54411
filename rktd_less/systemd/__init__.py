"""systemd and machined over D-Bus; ``bus.py`` is the only dbus-next user."""
