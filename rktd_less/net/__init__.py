"""Pod networking with CNI (reference networking.md).

- ``netlist``: rkt's ``--net`` grammar (pure).
- ``conf``: the network configurations of ``net.d`` directories, rkt's precedence (pure reads).
- ``cni``: running a CNI plugin and reading its result.
- ``setup``: a pod's networks up (stage1, before nspawn) and down (on exit, and in gc), with a
  record in the pod directory of everything that can outlive a crash.
- ``ports``: ``--port`` forwarding rules (iptables, as rkt wrote them).
- ``links``: the only pyroute2 user (checks of host links; never on the pod start path).

Importing this package imports nothing: stage0 and stage1 load only the module they use.
"""
