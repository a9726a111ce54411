"""Pod networking with CNI (reference networking.md).

- ``netlist``: rkt's ``--net`` grammar (pure).
- ``conf``: the network configurations of ``net.d`` directories, rkt's precedence (pure reads).
- ``cni``: running a CNI plugin and reading its result.
- ``setup``: a pod's networks up (stage1, before nspawn) and down (on exit, and in gc), with a
  record in the pod directory of everything that can outlive a crash.
- ``dns``: rkt's ``--dns*``/``--hosts-entry`` flags and the resolv.conf/hosts files (pure).
- ``ports``: rkt's ``--port`` flag and which app port each forward reaches (pure).
- ``portfwd``: the forwards as rkt's iptables nat chains, made and removed with the networks.

pyroute2 (the design card's netlink library) costs ~0.2 s to import and is not needed on the pod
start path: namespaces are made with libc (host/netns.py) and links by the CNI plugins. It is
kept for the links we will make ourselves (the kvm stage1's taps).

Importing this package imports nothing: stage0 and stage1 load only the module they use.
"""
