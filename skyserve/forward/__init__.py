"""Forwarding names outside our zones (CoreDNS's ``forward`` and ``cache`` plugins).

``policy`` decides (which upstream next, what a reply or a failure means, when to serve
stale), ``sockets`` moves bytes to and from upstreams, ``forwarder`` drives the two for
each question, and ``cache`` keeps upstream replies for their TTLs.
"""
