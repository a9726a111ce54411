"""appc spec v0.8.11: image and pod manifests (``manifest``), names, labels and the other
types (``types``), isolators, discovery parsing — pure, no I/O.

Import the submodule you need: this package imports none of them, so that what only needs
``isolators`` (stage1, on every pod start) does not pay for the manifest schema."""
