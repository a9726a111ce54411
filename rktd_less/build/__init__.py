"""acbuild's library: the build context (context), the manifest edits (edit), ACI files in
and out (aci), images through rkt's fetch and store (deps). The command is cli/acbuild.py."""
