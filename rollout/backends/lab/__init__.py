"""The lab: systemd-nspawn nodes on a host bridge behind a local HAProxy.

- :mod:`rollout.backends.lab.system`: root and program checks, a command runner.
- :mod:`rollout.backends.lab.base`: the cached debootstrap base image.
- :mod:`rollout.backends.lab.network`: bridge, NAT, per-node netns and veth.
- :mod:`rollout.backends.lab.records`: node records (``LabContext``, ``NodeRecord``).
- :mod:`rollout.backends.lab.nodes`: node lifecycle (start, stop, remove, ssh).
- :mod:`rollout.backends.lab.haproxy_process`: the lab's HAProxy process.
- :mod:`rollout.backends.lab.env`: ``lab_up``, ``lab_down``, ``lab_status``.

Nothing is imported here, so importing a submodule stays cheap.
"""
