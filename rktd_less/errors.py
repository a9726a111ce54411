"""The exception tree. Library code raises these; only ``cli/`` prints them.

    RktError                 any error a user can cause or meet; exit 254
    ├── UsageError           bad flags or arguments
    ├── PermissionDenied     needs root or group membership
    ├── NotFound             unknown image, pod, file
    │   └── Absent           acbuild: removing an entry the manifest does not have (exit 2)
    ├── Ambiguous            a prefix matching several images or pods
    ├── ManifestError        an image or pod manifest that does not validate
    ├── ImageError           an unreadable, corrupt or unsafe image archive
    ├── StoreError           the image store cannot do what was asked
    ├── PodError             a pod in the wrong state for the request
    ├── Stage1Error          the stage1 image or its entrypoints
    ├── SystemdError         systemd / machined refused or failed a request
    ├── FetchError           downloads and discovery: HTTP, TLS, redirects, sizes
    ├── NetworkError         pod networks: net.d confs, CNI plugins, ports
    └── TrustError           keys and signatures: untrusted, bad or missing signature

Each error has a one-line message and an optional hint (the fix), printed on one line as
``<verb>: <message> (<hint>)``.
"""

from __future__ import annotations


class RktError(Exception):
    """Base of every error the CLI turns into a one-line message and exit 254."""

    exit_code = 254

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(RktError):
    pass


class PermissionDenied(RktError):
    pass


class NotFound(RktError):
    pass


class Absent(NotFound):
    """acbuild's "rm" of a label, port, dependency... the manifest does not have: exit 2."""


class Ambiguous(RktError):
    pass


class ManifestError(RktError):
    pass


class ImageError(RktError):
    pass


class StoreError(RktError):
    pass


class PodError(RktError):
    pass


class Stage1Error(RktError):
    pass


class SystemdError(RktError):
    pass


class FetchError(RktError):
    pass


class TrustError(RktError):
    pass


class NetworkError(RktError):
    pass
